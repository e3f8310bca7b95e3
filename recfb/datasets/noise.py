"""Clean-test protocols for noisy-label denoising of implicit feedback.

- :func:`natural_noise_split`: every interaction (any rating) is a training positive; the
  test and validation parts keep only the clean ones (rating >= threshold), as in T-CE
  (Wang et al., WSDM 2021) on ml-100k.
- :func:`inject_noise`: add a stated fraction of random unobserved pairs to the training
  positives, with the mask of what was injected (the test stays clean).
- ModCloth as split by DeCA is :func:`recfb.datasets.load` ``("modcloth-deca")``
  (``train`` noisy, ``test_clean``), and :func:`recfb.datasets.make_world` with
  ``noise_rate > 0`` gives a synthetic world whose noise is known.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recfb.data.interactions import Interactions
from recfb.data.split import random_holdout
from recfb.utils.errors import DataError
from recfb.utils.pairs import contains, pair_keys
from recfb.utils.validation import check_random_state

__all__ = ["NoisySplit", "natural_noise_split", "inject_noise"]


@dataclass
class NoisySplit:
    """``train`` holds every training interaction (noisy ones included, ``noise_mask`` marks
    the known noise when there is one); ``valid`` and ``test`` hold clean interactions only."""
    train: Interactions
    valid: Interactions
    test: Interactions
    noise_mask: np.ndarray | None = None

    def __repr__(self) -> str:
        noisy = "unknown" if self.noise_mask is None else f"{int(self.noise_mask.sum()):,}"
        return (f"NoisySplit(train={len(self.train):,} (noisy: {noisy}), valid={len(self.valid):,}, "
                f"test={len(self.test):,} clean)")


def natural_noise_split(data: Interactions, clean_threshold: float = 4, test_fraction: float = 0.2,
                        validation_fraction: float = 0.1, seed=0) -> NoisySplit:
    """Per-user random holdout of rated interactions; all training rows are positives, but only
    held-out rows with ``value >= clean_threshold`` are kept for validation and test (the low
    ratings held out are dropped, not moved to train, so the parts stay disjoint)."""
    if data.values is None:
        raise DataError("natural_noise_split needs ratings (Interactions.values); this data has none.")
    train, valid, test = random_holdout(data, test_fraction=test_fraction, seed=seed,
                                        validation_fraction=validation_fraction)
    return NoisySplit(train, valid.subset(valid.values >= clean_threshold), test.subset(test.values >= clean_threshold))


def inject_noise(train: Interactions, rate: float, *, exclude: tuple = (), seed=0):
    """Add ``round(rate * n_u)`` random pairs to each user ``u``'s training rows (``n_u`` their
    row count), drawn uniformly from the items that the user has in none of ``train`` and
    ``exclude`` (e.g. the validation and test parts, so injected pairs never coincide with a
    held-out positive).

    Returns ``(noisy_train, noise_mask)``: the rows of ``train`` followed by the injected ones
    (values 1, timestamps None), and a boolean mask marking the injected rows. ``rate`` is the
    number of noisy rows per clean row (0.2 -> one sixth of the noisy train is noise).
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"rate == {rate!r}, must be a fraction in [0, 1).")
    rng = check_random_state(seed)
    n_users, n_items = train.n_users, train.n_items
    parts = [train, *exclude]
    for p in exclude:
        if p.n_users != n_users or p.n_items != n_items:
            raise DataError("exclude parts must share train's id space (same n_users and n_items).")
    keys = np.unique(np.concatenate([pair_keys(p.users, p.items, n_items) for p in parts]))
    n_seen = np.bincount(keys // n_items, minlength=n_users)
    want = np.floor(rate * np.bincount(train.users, minlength=n_users) + 0.5).astype(np.int64)
    free = n_items - n_seen
    if np.any(want > free):
        u = int(np.flatnonzero(want > free)[0])
        raise DataError(f"user {u} needs {want[u]} injected items but has only {free[u]} unobserved ones.")
    users = np.repeat(np.arange(n_users, dtype=np.int64), want)
    items = np.empty(users.size, np.int64)
    todo = np.arange(users.size)
    # vectorised rejection rounds: draw, reject seen pairs and duplicates within the draw
    for _ in range(200):
        if todo.size == 0:
            break
        items[todo] = rng.integers(0, n_items, size=todo.size)
        k = pair_keys(users, items, n_items)
        bad = contains(keys, k[todo])
        _, first = np.unique(k, return_index=True)
        dup = np.ones(users.size, bool)
        dup[first] = False
        todo = np.union1d(todo[bad], np.flatnonzero(dup))
    if todo.size:
        raise DataError("could not draw enough unobserved pairs (the matrix is nearly full).")
    noisy = Interactions(np.r_[train.users, users], np.r_[train.items, items],
                         None if train.values is None else np.r_[train.values, np.ones(users.size, train.values.dtype)],
                         None, user_map=train.user_map, item_map=train.item_map, validate=False)
    mask = np.r_[np.zeros(len(train), bool), np.ones(users.size, bool)]
    return noisy, mask
