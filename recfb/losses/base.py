"""The types every objective shares: :class:`Batch` (what a training step hands an objective
besides the scores) and :class:`Objective` (the interface the training step calls)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


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
    needs_batch = True  # False: the objective needs nothing of ``batch`` but, when given, its neg_weights
    #: True: the objective applies ``batch.neg_weights`` (per-negative weights from a denoiser,
    #: R-CE's) to its terms; the training step refuses negative weights for any other objective
    weights_negatives = False
    #: True for pointwise objectives (each negative a term of its own: BCE, Rel-MF, NBPO),
    #: False for pairwise ones (BPR, UBPR, WARP)
    pointwise = False

    def setup(self, X, device) -> None:
        pass

    def forward(self, pos, neg, batch: Batch | None = None):  # pragma: no cover
        raise NotImplementedError

    def regularization(self) -> torch.Tensor | float:
        """Penalty on the objective's own parameters (added to the batch loss)."""
        return 0.0
