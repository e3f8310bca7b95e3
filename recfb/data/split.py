"""Leakage-free, seeded splits of :class:`~recfb.data.Interactions`.

Every split returns parts in the *same id space* as its input (so ``train.matrix`` and
``test.matrix`` have the same shape), the parts are disjoint row sets, and their union is the
input: no row is dropped. Tests in ``tests/data/test_split.py`` prove both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recfb.data.interactions import Interactions
from recfb.utils.errors import DataError
from recfb.utils.validation import check_random_state

__all__ = ["random_holdout", "leave_one_out", "temporal", "strong_generalization", "StrongGeneralizationSplit"]


def _check_fraction(value, name, *, allow_zero=False):
    lo_ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float, np.floating)) and lo_ok and value < 1):
        raise ValueError(f"{name} == {value!r}, must be in {'[0' if allow_zero else '(0'}, 1).")
    return float(value)


def _check_data(data, fn: str) -> None:
    """A TypeError naming what was passed when it is not an :class:`Interactions` log."""
    if not isinstance(data, Interactions):
        parts = [a for a in ("train", "test", "valid") if isinstance(getattr(data, a, None), Interactions)]
        hint = (f"; it holds its logs as attributes ({', '.join('.' + a for a in parts)}): split one of them"
                 if parts else "; build one with recfb.data.Interactions or recfb.datasets.load")
        raise TypeError(f"split.{fn} takes an Interactions log, got {type(data).__name__}{hint}.")


def _rank_within_user(users: np.ndarray, key: np.ndarray):
    """For rows grouped by ``users`` and ordered by ``key``: (position within user, user's count)."""
    order = np.lexsort((key, users))
    counts = np.bincount(users)
    starts = np.cumsum(counts) - counts
    rank = np.empty(users.size, np.int64)
    rank[order] = np.arange(users.size) - starts[users[order]]
    return rank, counts[users]


def random_holdout(data: Interactions, test_fraction: float = 0.2, seed=0, validation_fraction: float = 0.0):
    """Per-user random holdout: each user's rows are shuffled and ``round(test_fraction * n_u)``
    of them go to test (likewise for validation). Every user keeps at least one train row, so a
    user with a single interaction stays wholly in train.

    Returns ``(train, test)``, or ``(train, valid, test)`` when ``validation_fraction > 0``.
    """
    _check_data(data, "random_holdout")
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    validation_fraction = _check_fraction(validation_fraction, "validation_fraction", allow_zero=True)
    if test_fraction + validation_fraction >= 1:
        raise ValueError(f"test_fraction + validation_fraction == {test_fraction + validation_fraction}, must be < 1.")
    rng = check_random_state(seed)
    rank, n = _rank_within_user(data.users, rng.random(len(data)))
    n_test = np.floor(test_fraction * n + 0.5).astype(np.int64)
    n_valid = np.floor(validation_fraction * n + 0.5).astype(np.int64)
    # always leave one row for training
    over = n_test + n_valid - (n - 1)
    over = np.maximum(over, 0)
    cut_v = np.minimum(over, n_valid)
    n_valid -= cut_v
    n_test -= over - cut_v
    test = rank < n_test
    valid = (rank >= n_test) & (rank < n_test + n_valid)
    train = ~(test | valid)
    if validation_fraction > 0:
        return data.subset(train), data.subset(valid), data.subset(test)
    return data.subset(train), data.subset(test)


def leave_one_out(data: Interactions, by: str = "timestamp", validation: bool = True):
    """Each user's last interaction is test and (if ``validation``) the second-last is validation.

    ``by="timestamp"`` orders by time (ties keep file order) and needs timestamps;
    ``by="row"`` uses file order (SASRec-style files). Users with fewer than 3 rows (2 without
    validation) stay wholly in train, as in SASRec's preprocessing.

    Returns ``(train, valid, test)``, or ``(train, test)`` when ``validation=False``.
    """
    _check_data(data, "leave_one_out")
    if by == "timestamp" and data.timestamps is None:
        raise DataError("leave_one_out(by='timestamp') needs timestamps, and these interactions have none; "
                        "pass by='row' if the file is already in time order.")
    order = data.order(by)
    pos = np.empty(len(data), np.int64)
    pos[order] = np.arange(len(data))
    rank, n = _rank_within_user(data.users, pos)
    from_end = n - 1 - rank
    need = 3 if validation else 2
    eligible = n >= need
    test = eligible & (from_end == 0)
    valid = eligible & (from_end == 1) if validation else np.zeros(len(data), bool)
    train = ~(test | valid)
    if validation:
        return data.subset(train), data.subset(valid), data.subset(test)
    return data.subset(train), data.subset(test)


def temporal(data: Interactions, test_fraction: float = 0.2, cut=None):
    """Global temporal cut: rows with timestamp >= ``cut`` are test. Without ``cut``, the cut is
    the ``1 - test_fraction`` quantile of the timestamps. Returns ``(train, test)``."""
    _check_data(data, "temporal")
    if data.timestamps is None:
        raise DataError("temporal split needs timestamps, and these interactions have none.")
    if cut is None:
        test_fraction = _check_fraction(test_fraction, "test_fraction")
        cut = np.quantile(data.timestamps, 1 - test_fraction, method="higher")
    test = data.timestamps >= cut
    if test.all() or not test.any():
        raise DataError(f"temporal cut {cut} puts {'every' if test.all() else 'no'} row in test; "
                        f"timestamps span {data.timestamps.min()}..{data.timestamps.max()}.")
    return data.subset(~test), data.subset(test)


@dataclass
class StrongGeneralizationSplit:
    """Users split into train users and held-out users; each held-out user's rows are split into
    a fold-in part (given to the model at prediction time) and a target part (to predict)."""
    train: Interactions
    test_fold_in: Interactions
    test_target: Interactions
    valid_fold_in: Interactions | None = None
    valid_target: Interactions | None = None

    @property
    def test_users(self) -> np.ndarray:
        return np.unique(np.r_[self.test_fold_in.users, self.test_target.users])

    @property
    def valid_users(self) -> np.ndarray:
        if self.valid_fold_in is None:
            return np.empty(0, np.int64)
        return np.unique(np.r_[self.valid_fold_in.users, self.valid_target.users])


def strong_generalization(data: Interactions, test_users=0.1, validation_users=0.0, target_fraction: float = 0.2,
                          seed=0) -> StrongGeneralizationSplit:
    """Strong generalisation (Liang et al., WWW 2018, VAE-CF): held-out *users* are unseen in
    training; for each, ``target_fraction`` of their rows (at least one) are the target and the
    rest the fold-in history. ``test_users`` / ``validation_users`` are fractions (< 1) or counts.
    Users with a single row cannot be split and stay in train.
    """
    _check_data(data, "strong_generalization")
    target_fraction = _check_fraction(target_fraction, "target_fraction")
    rng = check_random_state(seed)
    counts = np.bincount(data.users, minlength=data.n_users)
    candidates = np.flatnonzero(counts >= 2)

    def n_of(x, name):
        if isinstance(x, float) and 0 <= x < 1:
            return int(round(x * candidates.size))
        if isinstance(x, (int, np.integer)) and x >= 0:
            return int(x)
        raise ValueError(f"{name} == {x!r}, must be a fraction in [0, 1) or a count >= 0.")

    n_test, n_valid = n_of(test_users, "test_users"), n_of(validation_users, "validation_users")
    if n_test < 1:
        raise ValueError(f"test_users == {test_users!r} selects no user out of {candidates.size} with >= 2 rows.")
    if n_test + n_valid >= candidates.size:
        raise ValueError(f"{n_test} test + {n_valid} validation users leave no training user "
                         f"({candidates.size} users have >= 2 rows).")
    perm = rng.permutation(candidates)
    role = np.zeros(data.n_users, np.int8)  # 0 train, 1 test, 2 valid
    role[perm[:n_test]] = 1
    role[perm[n_test:n_test + n_valid]] = 2
    rank, n = _rank_within_user(data.users, rng.random(len(data)))
    n_target = np.maximum(1, np.floor(target_fraction * n + 0.5).astype(np.int64))
    n_target = np.minimum(n_target, n - 1)
    is_target = rank < n_target
    r = role[data.users]
    out = StrongGeneralizationSplit(
        train=data.subset(r == 0),
        test_fold_in=data.subset((r == 1) & ~is_target),
        test_target=data.subset((r == 1) & is_target),
    )
    if n_valid:
        out.valid_fold_in = data.subset((r == 2) & ~is_target)
        out.valid_target = data.subset((r == 2) & is_target)
    return out
