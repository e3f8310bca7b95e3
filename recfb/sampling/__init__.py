"""Negative samplers for the training loop: which negatives each positive is paired with. All
take a ``torch.Generator``, so a seed fixes a run. (Which positives a batch trains on is the
epoch's seeded permutation; a denoiser may resample them: :meth:`recfb.denoise.Denoiser.resample`.)"""
from recfb.sampling.negative import (
    NEGATIVE_SAMPLERS,
    NegativeSampler,
    PopularityNegatives,
    UniformNegatives,
    VerifiedUniformNegatives,
    make_negative_sampler,
)

__all__ = ["NEGATIVE_SAMPLERS", "NegativeSampler", "UniformNegatives", "PopularityNegatives", "VerifiedUniformNegatives",
           "make_negative_sampler"]
