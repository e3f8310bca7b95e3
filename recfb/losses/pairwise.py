"""Pair objectives on (positive scores (B,), sampled negative scores (B, n)): BPR, BCE and
CML's WARP-weighted hinge, with CML's covariance penalty."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from recfb.losses.base import Objective


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, neg_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Rendle et al. 2009: ``-log sigmoid(s_ui - s_uj)`` averaged over a positive's negatives.
    pos (B,), neg (B, n) -> (B,). Optional ``neg_weights`` (B, n) weight each pair's term
    (R-CE's weight of the negative j; the positive's own weight multiplies the whole row)."""
    pair = -F.logsigmoid(pos.unsqueeze(1) - neg)
    if neg_weights is not None:
        pair = pair * neg_weights
    return pair.mean(dim=1)


def bce_loss(pos: torch.Tensor, neg: torch.Tensor, neg_weights: torch.Tensor | None = None):
    """Pointwise log loss: positives labelled 1, sampled negatives 0.
    Returns (positive part (B,), negative part summed over the n negatives (B,)); optional
    ``neg_weights`` (B, n) weight each negative's term (R-CE reweights negatives too)."""
    neg_part = F.softplus(neg)
    if neg_weights is not None:
        neg_part = neg_part * neg_weights
    return F.softplus(-pos), neg_part.sum(dim=1)


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


class BPR(Objective):
    """:func:`bpr_loss`, all of it in the positive part (the pair is one example)."""
    name = "bpr"
    needs_batch = False
    weights_negatives = True

    def forward(self, pos, neg, batch=None):
        return bpr_loss(pos, neg, None if batch is None else batch.neg_weights), torch.zeros_like(pos)


class BCE(Objective):
    """:func:`bce_loss`: positives in the positive part, sampled negatives in the negative part."""
    name = "bce"
    needs_batch = False
    weights_negatives = True
    pointwise = True

    def forward(self, pos, neg, batch=None):
        return bce_loss(pos, neg, None if batch is None else batch.neg_weights)


class WARPHinge(Objective):
    """:func:`warp_hinge_loss` with its margin and the catalogue size of its rank weight."""
    name = "warp"

    def __init__(self, margin: float = 0.5, n_items: int = 1):
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin == {margin}, must be > 0.")
        self.margin, self.n_items = margin, n_items

    def forward(self, pos, neg, batch=None):
        return warp_hinge_loss(pos, neg, self.margin, self.n_items), torch.zeros_like(pos)
