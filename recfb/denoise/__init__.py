"""Noisy-label denoising of implicit feedback, composable with any scorer and objective.

- :class:`TCE` / :class:`RCE` (Wang et al., WSDM 2021): truncate or reweight high-loss positives.
- :class:`PLD` (Zhang et al., WWW 2025): resample positives by the user's personal loss distribution.
- NBPO (Yu & Qin, SIGIR 2020) is an objective: ``MF(loss="nbpo")`` / :class:`recfb.losses.NBPO`.

A :class:`Denoiser` sees the per-positive losses of every batch and returns per-positive weights
(a 0/1 mask for truncation); the training loop is the same for all.
"""
from recfb.denoise.base import Denoiser
from recfb.denoise.pld import PLD
from recfb.denoise.truncated import RCE, TCE

__all__ = ["Denoiser", "TCE", "RCE", "PLD"]
