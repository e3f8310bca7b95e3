"""Negative samplers, vectorised on torch tensors (no Python loop per interaction)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recfb.utils.errors import DataError


class NegativeSampler:
    """``sample(users, n, generator) -> (len(users), n)`` int64 item ids."""

    def setup(self, X: sp.csr_matrix, device) -> None:
        self.n_items = X.shape[1]
        self.device = device

    def sample(self, users: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class UniformNegatives(NegativeSampler):
    """Items uniformly at random (may hit a user's positives, as in implicit's default BPR)."""

    def sample(self, users, n, generator):
        return torch.randint(0, self.n_items, (users.numel(), n), generator=generator, device=users.device)


class PopularityNegatives(NegativeSampler):
    """Items with probability proportional to ``popularity ** alpha`` (alpha=0 is uniform)."""

    def __init__(self, alpha: float = 0.75):
        if not alpha >= 0:
            raise ValueError(f"alpha == {alpha}, must be >= 0.")
        self.alpha = alpha

    def setup(self, X, device):
        super().setup(X, device)
        pop = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64) ** self.alpha
        pop[np.bincount(X.indices, minlength=X.shape[1]) == 0] = 0.0 if self.alpha > 0 else 1.0
        if pop.sum() == 0:
            pop[:] = 1.0
        self.probs = torch.as_tensor(pop / pop.sum(), dtype=torch.float32, device=device)

    def sample(self, users, n, generator):
        flat = torch.multinomial(self.probs, users.numel() * n, replacement=True, generator=generator)
        return flat.view(users.numel(), n)


class VerifiedUniformNegatives(NegativeSampler):
    """Uniform items that the user has *not* interacted with (rejection in vectorised rounds).

    Membership is checked with a sorted key array ``user * n_items + item`` and
    ``searchsorted``. A user who interacted with every item has no negative: ``setup`` raises.
    """

    max_rounds = 50

    def __init__(self, allow_full_users: bool = False):
        # allow_full_users: a user who interacted with every item gets unchecked uniform items
        # instead of an error (SASRec's histories may cover a small catalogue)
        self.allow_full_users = allow_full_users

    def setup(self, X, device):
        super().setup(X, device)
        counts = np.diff(X.indptr)
        full = np.flatnonzero(counts >= X.shape[1])
        if full.size and not self.allow_full_users:
            raise DataError(f"user {int(full[0])} interacted with all {X.shape[1]} items, so no unseen negative "
                            "exists; drop such users or use negatives='uniform'.")
        users = np.repeat(np.arange(X.shape[0], dtype=np.int64), counts)
        keys = np.sort(users * X.shape[1] + X.indices.astype(np.int64))
        self.keys = torch.as_tensor(keys, device=device)
        self.full = torch.as_tensor(counts >= X.shape[1], device=device)

    def _seen(self, users, items):
        key = users.unsqueeze(1) * self.n_items + items
        pos = torch.searchsorted(self.keys, key).clamp_(max=max(self.keys.numel() - 1, 0))
        return self.keys[pos] == key if self.keys.numel() else torch.zeros_like(key, dtype=torch.bool)

    def sample(self, users, n, generator):
        items = torch.randint(0, self.n_items, (users.numel(), n), generator=generator, device=users.device)
        for _ in range(self.max_rounds):
            bad = self._seen(users, items) & ~self.full[users].unsqueeze(1)
            n_bad = int(bad.sum())
            if n_bad == 0:
                return items
            items[bad] = torch.randint(0, self.n_items, (n_bad,), generator=generator, device=users.device)
        return items  # astronomically unlikely unless a user has nearly every item


def make_negative_sampler(spec) -> NegativeSampler:
    """``"uniform"``, ``"verified"`` (uniform, unseen), ``"popularity"`` (alpha 0.75), or an instance."""
    if isinstance(spec, NegativeSampler):
        return spec
    if not isinstance(spec, str) or spec not in NEGATIVE_SAMPLERS:
        raise ValueError(f"negatives == {spec!r}, must be one of {sorted(NEGATIVE_SAMPLERS)} or a NegativeSampler.")
    return NEGATIVE_SAMPLERS[spec]()


#: names accepted by ``negatives=`` (the one name -> class table of the samplers)
NEGATIVE_SAMPLERS: dict = {"uniform": UniformNegatives, "verified": VerifiedUniformNegatives,
                           "popularity": PopularityNegatives}
