"""Learning and evaluating under missing-not-at-random (MNAR) exposure.

Propensity models (item popularity, exposure logs, position-based examination by
regression-EM), clipping and self-normalised inverse-propensity weights, and Saito's
semi-synthetic protocol. The unbiased objectives live in :mod:`recfb.losses.unbiased`, the
unbiased metrics in :mod:`recfb.evaluation.unbiased`.
"""
from recfb.debias.exposure import ExposurePropensity
from recfb.debias.position import PositionBasedModel
from recfb.debias.propensity import (
    check_clip,
    check_propensity,
    clip_propensity,
    interaction_propensity,
    ips_weights,
    popularity_propensity,
)
from recfb.debias.semisynthetic import SemiSyntheticWorld, complete_ratings, make_semi_synthetic

__all__ = ["ExposurePropensity", "PositionBasedModel", "check_clip", "check_propensity", "clip_propensity",
           "interaction_propensity", "ips_weights", "popularity_propensity", "SemiSyntheticWorld",
           "complete_ratings", "make_semi_synthetic"]
