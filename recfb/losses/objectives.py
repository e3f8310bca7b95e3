"""BPR, BCE and WARP-weighted hinge objectives, and CML's covariance penalty."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Rendle et al. 2009: ``-log sigmoid(s_ui - s_uj)`` averaged over a positive's negatives.
    pos (B,), neg (B, n) -> (B,)."""
    return -F.logsigmoid(pos.unsqueeze(1) - neg).mean(dim=1)


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


@dataclass
class Batch:
    """What an objective may need besides the scores: the batch's users ``(B,)``, positive
    items ``(B,)``, sampled negatives ``(B, n)``, interaction indices ``(B,)`` (rows of the
    training COO arrays, CSR order), the global step, and optional per-negative weights
    ``(B, n)`` from a denoiser."""
    users: torch.Tensor
    items: torch.Tensor
    negatives: torch.Tensor
    index: torch.Tensor
    step: int = 0
    neg_weights: torch.Tensor | None = None


class Objective(torch.nn.Module):
    """Base: ``objective(pos (B,), neg (B, n), batch=None) -> (positive_loss (B,), negative_loss (B,))``.

    The positive part is what per-interaction weights (IPS) and denoisers act on. An objective
    is a ``torch.nn.Module``: learnable parameters (NBPO's label-flip rates) are trained by the
    same optimiser as the scorer and saved in checkpoints. ``setup(X, device)`` is called once
    before training with the CSR training matrix (for propensities, counts)."""

    name = "objective"
    needs_batch = True  # False: the objective ignores ``batch`` (callers may pass None)

    def setup(self, X, device) -> None:
        pass

    def forward(self, pos, neg, batch: Batch | None = None):  # pragma: no cover
        raise NotImplementedError

    def regularization(self) -> torch.Tensor | float:
        """Penalty on the objective's own parameters (added to the batch loss)."""
        return 0.0


class BPR(Objective):
    name = "bpr"
    needs_batch = False

    def forward(self, pos, neg, batch=None):
        return bpr_loss(pos, neg), torch.zeros_like(pos)


class BCE(Objective):
    name = "bce"
    needs_batch = False

    def forward(self, pos, neg, batch=None):
        return bce_loss(pos, neg, None if batch is None else batch.neg_weights)


class WARPHinge(Objective):
    name = "warp"

    def __init__(self, margin: float = 0.5, n_items: int = 1):
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin == {margin}, must be > 0.")
        self.margin, self.n_items = margin, n_items

    def forward(self, pos, neg, batch=None):
        return warp_hinge_loss(pos, neg, self.margin, self.n_items), torch.zeros_like(pos)


OBJECTIVES: dict = {"bpr": BPR, "bce": BCE}


def make_objective(spec, **kwargs) -> Objective:
    """An Objective from its name (``kwargs`` go to its constructor) or an instance as is."""
    if isinstance(spec, Objective):
        return spec
    if spec not in OBJECTIVES:
        raise ValueError(f"loss == {spec!r}, must be one of {sorted(OBJECTIVES)} or an Objective instance.")
    return OBJECTIVES[spec](**kwargs)



