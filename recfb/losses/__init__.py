"""Objectives: pure torch functions of scores, unit-tested alone.

An :class:`Objective` maps positive scores ``(B,)`` and negative scores ``(B, n)`` to a
per-positive loss ``(B,)`` and a per-positive negative-part loss ``(B,)``; the training loop
weights the first by per-interaction weights (IPS, denoising) and sums.
"""
from recfb.losses.noisy import NBPO, nbpo_loss
from recfb.losses.objectives import (
    BCE,
    BPR,
    Objective,
    WARPHinge,
    bce_loss,
    bpr_loss,
    covariance_penalty,
    make_objective,
    warp_hinge_loss,
)
from recfb.losses.unbiased import UBPR, DRRelMF, RelMF, dr_relmf, ideal_pairwise_loss, ideal_pointwise_loss, relmf, ubpr

__all__ = ["Objective", "BPR", "BCE", "WARPHinge", "bpr_loss", "bce_loss", "warp_hinge_loss",
           "covariance_penalty", "make_objective", "NBPO", "nbpo_loss"]
__all__ += ["RelMF", "UBPR", "DRRelMF", "relmf", "ubpr", "dr_relmf", "ideal_pointwise_loss", "ideal_pairwise_loss"]
