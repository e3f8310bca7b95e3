"""Offline evaluation: full-ranking and sampled-negatives top-k metrics.

Models are reached only through their public ``recommend`` (full ranking) and ``score``
(sampled protocol) methods, so implicit's models work with :func:`ranking_metrics` too.
"""
from recfb.evaluation._common import MetricResults
from recfb.evaluation.ranking import ranking_metrics
from recfb.evaluation.sampled import sample_negatives, sampled_ranking_metrics

__all__ = ["MetricResults", "ranking_metrics", "sample_negatives", "sampled_ranking_metrics"]
