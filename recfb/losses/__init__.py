"""Objectives: pure torch functions of scores, unit-tested alone.

An :class:`Objective` maps positive scores ``(B,)`` and negative scores ``(B, n)`` to a
per-positive loss ``(B,)`` and a per-positive negative-part loss ``(B,)``; the training step
(:mod:`recfb.train.step`) weights the first by per-interaction weights (IPS, denoising) and
sums. Modules: :mod:`~recfb.losses.base` (the types), :mod:`~recfb.losses.pairwise` (BPR, BCE,
WARP hinge), :mod:`~recfb.losses.unbiased` (Rel-MF, UBPR, DR), :mod:`~recfb.losses.noisy`
(NBPO). :data:`OBJECTIVES` is the one name -> class table; nothing registers into it at
import time.
"""
from recfb.losses.base import Batch, Objective
from recfb.losses.noisy import NBPO, nbpo_loss
from recfb.losses.pairwise import BCE, BPR, WARPHinge, bce_loss, bpr_loss, covariance_penalty, warp_hinge_loss
from recfb.losses.sequence import GBCE, FullSoftmax, SampledSoftmax, SeqBCE, gbce_beta, gbce_loss, sampled_softmax_loss
from recfb.losses.unbiased import UBPR, DRRelMF, RelMF, dr_relmf, ideal_pairwise_loss, ideal_pointwise_loss, relmf, ubpr

#: names accepted by ``MF(loss=...)``, ``LightGCN(loss=...)`` and :func:`make_objective`
OBJECTIVES: dict = {
    "bpr": BPR,
    "bce": BCE,
    "nbpo": NBPO,
    "relmf": RelMF,
    "ubpr": UBPR,
    "relmf_dr": DRRelMF,
    "gbce": GBCE,
    "sampled_softmax": SampledSoftmax,
}


def make_objective(spec, **kwargs) -> Objective:
    """An Objective from its name in :data:`OBJECTIVES` (``kwargs`` go to its constructor), or
    an instance as is."""
    if isinstance(spec, Objective):
        return spec
    if not isinstance(spec, str) or spec not in OBJECTIVES:
        raise ValueError(f"loss == {spec!r}, must be one of {sorted(OBJECTIVES)} or an Objective instance.")
    return OBJECTIVES[spec](**kwargs)


__all__ = ["Batch", "Objective", "OBJECTIVES", "make_objective", "BPR", "BCE", "WARPHinge", "bpr_loss", "bce_loss",
           "warp_hinge_loss", "covariance_penalty", "NBPO", "nbpo_loss"]
__all__ += ["RelMF", "UBPR", "DRRelMF", "relmf", "ubpr", "dr_relmf", "ideal_pointwise_loss", "ideal_pairwise_loss"]
__all__ += ["SeqBCE", "GBCE", "SampledSoftmax", "FullSoftmax", "gbce_beta", "gbce_loss", "sampled_softmax_loss"]
