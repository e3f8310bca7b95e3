"""Test utilities for recfb models, importable by users who write their own models."""
from recfb.testing.contract import (
    RecommenderContract,
    checkerboard,
    checkerboard_holdout,
    checkerboard_ndcg,
    ordered_interactions,
)

__all__ = ["RecommenderContract", "checkerboard", "checkerboard_holdout", "checkerboard_ndcg", "ordered_interactions"]
