"""Samplers for the training loop: which positives an epoch visits, and which negatives
each positive is paired with. All take a ``torch.Generator``, so a seed fixes a run."""
from recfb.sampling.negative import (
    NegativeSampler,
    PopularityNegatives,
    UniformNegatives,
    VerifiedUniformNegatives,
    make_negative_sampler,
)
from recfb.sampling.positive import AllPositives, PositiveSampler

__all__ = ["NegativeSampler", "UniformNegatives", "PopularityNegatives", "VerifiedUniformNegatives",
           "make_negative_sampler", "PositiveSampler", "AllPositives"]
