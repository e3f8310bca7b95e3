"""Noisy-label denoising hooks. A :class:`Denoiser` sees the per-positive losses of every
batch and returns per-positive weights (a 0/1 mask for truncation). Methods (T-CE, R-CE, ...)
subclass it; the training loop is the same for all."""
from recfb.denoise.base import Denoiser

__all__ = ["Denoiser"]
