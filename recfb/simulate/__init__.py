"""Feedback loops: run a recommender in closed loop with a world of known relevance.

:func:`run_loop` retrains a model on the clicks its own lists produced, round after round,
logs every impression with the policy's exact probability and the slot's examination
probability, and records accuracy (true DCG) and concentration (exposure Gini, coverage,
top-1% share, novelty) per round: the recommender version of Taori & Hashimoto's data
feedback loops, and a testbed for IPS, SNIPS, Rel-MF and DR retraining with true propensities.
"""
from recfb.simulate.loop import HISTORY_COLUMNS, LOG_COLUMNS, LoopResult, plot_histories, run_loop
from recfb.simulate.policies import (
    epsilon_greedy_policy,
    examination_propensities,
    make_policy,
    softmax_policy,
    topk_policy,
)

__all__ = ["run_loop", "LoopResult", "plot_histories", "HISTORY_COLUMNS", "LOG_COLUMNS", "topk_policy",
           "softmax_policy", "epsilon_greedy_policy", "make_policy", "examination_propensities"]
