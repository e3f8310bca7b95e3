"""Offline evaluation: full-ranking and sampled-negatives top-k metrics, and metrics under
MNAR exposure (MAR test sets, IPS/SNIPS estimates, popularity buckets), and beyond-accuracy
metrics (novelty, Gini, coverage, popularity, intra-list diversity, miscalibration).

Models are reached only through their public ``recommend`` (full ranking) and ``score``
(sampled protocol) methods, so implicit's models work with :func:`ranking_metrics` too.
"""
from recfb.evaluation._common import MetricResults
from recfb.evaluation.diversity import DIVERSITY_METRICS, diversity_metrics, gini
from recfb.evaluation.ranking import ranking_metrics
from recfb.evaluation.sampled import sample_negatives, sampled_ranking_metrics
from recfb.evaluation.unbiased import (
    ips_ranking_metrics,
    mar_ranking_metrics,
    metrics_by_popularity,
    popularity_buckets,
    true_relevance_metrics,
)

__all__ = ["MetricResults", "ranking_metrics", "sample_negatives", "sampled_ranking_metrics",
           "mar_ranking_metrics", "ips_ranking_metrics", "true_relevance_metrics", "popularity_buckets",
           "metrics_by_popularity", "DIVERSITY_METRICS", "diversity_metrics", "gini"]
