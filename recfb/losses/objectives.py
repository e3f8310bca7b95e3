"""BPR, BCE and WARP-weighted hinge objectives, and CML's covariance penalty."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Rendle et al. 2009: ``-log sigmoid(s_ui - s_uj)`` averaged over a positive's negatives.
    pos (B,), neg (B, n) -> (B,)."""
    return -F.logsigmoid(pos.unsqueeze(1) - neg).mean(dim=1)


def bce_loss(pos: torch.Tensor, neg: torch.Tensor):
    """Pointwise log loss: positives labelled 1, sampled negatives 0.
    Returns (positive part (B,), negative part summed over the n negatives (B,))."""
    return F.softplus(-pos), F.softplus(neg).sum(dim=1)


def warp_hinge_loss(pos: torch.Tensor, neg: torch.Tensor, margin: float, n_items: int) -> torch.Tensor:
    """CML's loss (Hsieh et al. 2017) on *scores* (negative squared distances):
    ``w_ui * [m - s_ui + max_j s_uj]_+`` with the WARP rank weight
    ``w_ui = log(1 + floor(n_items * violators / n))`` estimated from the n sampled negatives."""
    violate = (margin - pos.unsqueeze(1) + neg) > 0
    rank = torch.floor(n_items * violate.float().mean(dim=1))
    weight = torch.log1p(rank)
    hardest = neg.max(dim=1).values
    return weight * F.relu(margin - pos + hardest)


def covariance_penalty(embeddings: torch.Tensor) -> torch.Tensor:
    """CML's covariance regulariser: off-diagonal covariance of the rows, Frobenius norm / N."""
    x = embeddings - embeddings.mean(dim=0, keepdim=True)
    cov = x.T @ x / max(x.shape[0], 1)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / max(x.shape[0], 1)


class Objective:
    """Base: ``__call__(pos (B,), neg (B, n)) -> (positive_loss (B,), negative_loss (B,))``.
    The positive part is what per-interaction weights and denoisers act on."""

    name = "objective"

    def __call__(self, pos, neg):  # pragma: no cover
        raise NotImplementedError


class BPR(Objective):
    name = "bpr"

    def __call__(self, pos, neg):
        return bpr_loss(pos, neg), torch.zeros_like(pos)


class BCE(Objective):
    name = "bce"

    def __call__(self, pos, neg):
        return bce_loss(pos, neg)


class WARPHinge(Objective):
    name = "warp"

    def __init__(self, margin: float = 0.5, n_items: int = 1):
        if not margin > 0:
            raise ValueError(f"margin == {margin}, must be > 0.")
        self.margin, self.n_items = margin, n_items

    def __call__(self, pos, neg):
        return warp_hinge_loss(pos, neg, self.margin, self.n_items), torch.zeros_like(pos)


def make_objective(spec) -> Objective:
    if isinstance(spec, Objective):
        return spec
    table = {"bpr": BPR, "bce": BCE}
    if spec not in table:
        raise ValueError(f"loss == {spec!r}, must be one of {sorted(table)} or an Objective instance.")
    return table[spec]()



