"""How the sequential models choose their epochs when ``iterations=None`` (the default).

The epochs are chosen by early stopping on validation: the user's ``valid_items``, else the
last training item of HOLDOUT_FRACTION of the sequences (at least HOLDOUT_MIN and at most
HOLDOUT_MAX of them), held out of training. The rule and its constants come from
benchmarks/defaults_sequential.py (benchmarks/RESULTS.md, "Sequential defaults"). The fit reads
them from this module at call time (tests patch them here).
"""
from __future__ import annotations

import math

HOLDOUT_FRACTION, HOLDOUT_MIN, HOLDOUT_MAX = 0.1, 1000, 5000
EVAL_STEPS = 100  # ``eval_every=None``: validate about every this many optimiser steps
AUTO_PATIENCE = 10  # validations (about 100 steps apart) without improvement before stopping, at least ...
AUTO_PATIENCE_FRACTION = 0.5  # ... and at least this fraction of the best epoch so far
AUTO_MAX_EPOCHS = 500


def auto_eval_every(n_sequences: int, batch_size: int) -> int:
    """``eval_every=None``: about every :data:`EVAL_STEPS` optimiser steps, in whole epochs."""
    steps_per_epoch = max(math.ceil(n_sequences / batch_size), 1)
    return max(1, round(EVAL_STEPS / steps_per_epoch))


class GrowingPatience:
    """Epoch callback of ``iterations=None``: keeps the loop's patience (in validations) at
    ``max(AUTO_PATIENCE, ceil(AUTO_PATIENCE_FRACTION * best_epoch / eval_every))``, so that a
    run that is still improving late may also wait longer (gBCE, for one, can sit on a plateau
    for hundreds of steps before it climbs)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def __call__(self, epoch, logs):
        scores = [(h["valid"], -h["epoch"]) for h in self.trainer.history if "valid" in h]
        if scores:  # from the whole history (a resumed run included), first best epoch as the loop
            best_epoch = -max(scores)[1]
            config = self.trainer.config
            config.patience = max(AUTO_PATIENCE, math.ceil(AUTO_PATIENCE_FRACTION * best_epoch / config.eval_every))

