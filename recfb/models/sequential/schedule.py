"""How the sequential models choose their epochs when ``iterations=None`` (the default).

The epochs are chosen by early stopping on validation: the user's ``valid_items``, else the
last training item of HOLDOUT_FRACTION of the sequences (at least HOLDOUT_MIN and at most
HOLDOUT_MAX of them), held out of training. The rule and its constants come from
benchmarks/defaults_sequential.py and benchmarks/sequential_plateau.py (benchmarks/RESULTS.md,
"Sequential defaults"). The fit reads them from this module at call time (tests patch them here).

The rule (:class:`AutoStopping`, one decision per validation, :func:`decide`):

- **Stop** once ``patience`` validations have passed without a new best (None: at least
  AUTO_PATIENCE, and half the best epoch: :func:`patience_at`), but never while the run is still
  on its initial plateau (:func:`left_plateau`): patience starts counting only once a
  validation is clearly above the first one (by more than :func:`noise_band`), or after
  AUTO_PLATEAU_STEPS optimiser steps. gBCE, for one, sits near popularity for hundreds of steps
  before it climbs.
- **Choose**, on the internal holdout, the maximum of the curve smoothed over AUTO_SMOOTH
  validations (:func:`choose_epoch`), not its raw maximum. The holdout is small (1,000 users on
  a log of 1,500), so its curve is noisy, and its raw maximum fell on single noise peaks: for
  gSASRec on the Video subsample, early on gBCE's plateau (epoch 48, MostPopular's level on
  validation), where the smoothed curve peaks at 64, the validation curve's own peak. With the
  user's ``valid_items`` the best epoch's weights are restored (the raw maximum).
"""
from __future__ import annotations

import math

import numpy as np

HOLDOUT_FRACTION, HOLDOUT_MIN, HOLDOUT_MAX = 0.1, 1000, 5000
EVAL_STEPS = 100  # ``eval_every=None``: validate about every this many optimiser steps
AUTO_PATIENCE = 10  # validations (about 100 steps apart) without improvement before stopping, at least ...
AUTO_PATIENCE_FRACTION = 0.5  # ... and at least this fraction of the best epoch so far
AUTO_MAX_EPOCHS = 500
AUTO_SMOOTH = 5  # the holdout's epoch: the maximum of its curve averaged over this many validations (~500 steps)
NOISE_Z = 1.0  # "clearly above": more than NOISE_Z standard errors (upper bound, noise_band)
# patience does not count before this many optimiser steps unless the run has clearly risen above its
# first validation: gBCE's initial plateau near popularity lasted ~500-700 steps on the 1,500-user
# Beauty and Video subsamples (benchmarks/RESULTS.md, "Sequential defaults")
AUTO_PLATEAU_STEPS = 2000


def auto_eval_every(n_sequences: int, batch_size: int) -> int:
    """``eval_every=None``: about every :data:`EVAL_STEPS` optimiser steps, in whole epochs."""
    steps_per_epoch = max(math.ceil(n_sequences / batch_size), 1)
    return max(1, round(EVAL_STEPS / steps_per_epoch))


def noise_band(score: float, n_users: int) -> float:
    """:data:`NOISE_Z` times ``sqrt(score (1 - score) / n_users)``, an upper bound on the standard
    error of a mean of ``n_users`` per-user values in [0, 1] whose mean is ``score`` (NDCG@10 of
    one validation item per user: its variance is at most ``m (1 - m)``). It needs only the
    score, so every rank of a distributed fit computes the same band."""
    m = min(max(float(score), 0.0), 1.0)
    return NOISE_Z * math.sqrt(m * (1.0 - m) / max(int(n_users), 1))


def choose_epoch(epochs, scores, window: int | None = None) -> int:
    """The epoch of the first maximum of the validation curve smoothed by a centred moving average
    over ``window`` validations (None: :data:`AUTO_SMOOTH`; shorter at the ends of the curve).
    ``window=1`` is the plain first maximum."""
    w = AUTO_SMOOTH if window is None else int(window)
    h = w // 2
    s = np.asarray(scores, np.float64)
    c = np.concatenate([[0.0], np.cumsum(s)])
    lo, hi = np.maximum(np.arange(s.size) - h, 0), np.minimum(np.arange(s.size) + h + 1, s.size)
    return int(epochs[int(np.argmax((c[hi] - c[lo]) / (hi - lo)))])


def patience_at(best_epoch: int, eval_every: int) -> int:
    """Validations to wait after the best epoch: ``max(AUTO_PATIENCE, ceil(AUTO_PATIENCE_FRACTION *
    best_epoch / eval_every))``, so a run that is still improving late also waits longer."""
    return max(AUTO_PATIENCE, math.ceil(AUTO_PATIENCE_FRACTION * best_epoch / eval_every))


def left_plateau(scores, n_users: int, steps: int) -> bool:
    """Whether a run has left its initial plateau: a validation clearly (more than
    :func:`noise_band`) above the first one, or :data:`AUTO_PLATEAU_STEPS` optimiser steps done."""
    first = scores[0]
    return steps >= AUTO_PLATEAU_STEPS or any(s > first + noise_band(first, n_users) for s in scores[1:])


def decide(epochs, scores, n_users: int, eval_every: int, steps_per_epoch: int, patience: int | None = None,
           smooth: bool = True):
    """(chosen epoch, stop now) after the validations ``scores`` at ``epochs`` (the last one just
    taken). The chosen epoch is :func:`choose_epoch` (``smooth``) or the first best; the run stops
    once it has left its initial plateau (:func:`left_plateau`) and ``patience`` validations (None:
    :func:`patience_at` of the best epoch) have passed since its best."""
    best_i = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first best, as the loop's
    chosen = choose_epoch(epochs, scores) if smooth else epochs[best_i]
    wait = patience if patience is not None else patience_at(epochs[best_i], eval_every)
    stop = len(scores) - 1 - best_i >= wait and left_plateau(scores, n_users, epochs[-1] * steps_per_epoch)
    return chosen, stop


def replay(scores, epochs, n_users: int, eval_every: int, steps_per_epoch: int, patience: int | None = None,
           smooth: bool = True):
    """(chosen epoch, epoch at which the run stops, or the last one) of :class:`AutoStopping` on a
    recorded validation curve (``scores`` at ``epochs``): benchmarks and tests replay the rule."""
    for i in range(len(scores)):
        chosen, stop = decide(epochs[:i + 1], scores[:i + 1], n_users, eval_every, steps_per_epoch, patience, smooth)
        if stop:
            return chosen, epochs[i]
    return chosen, epochs[-1]


class AutoStopping:
    """Epoch callback of ``iterations=None`` (the loop's own patience is off): after each
    validation, :func:`decide` on the curve so far (the whole history, a resumed run's included);
    when it says stop, the run ends after this epoch (``config.epochs`` lowered to it,
    ``stopped_by == "patience"``). ``chosen_epoch`` is what the fit keeps: on the internal holdout
    (``smooth=True``) the maximum of the smoothed curve, which the refit trains for; with the
    user's ``valid_items`` (``smooth=False``) the best, whose weights the loop restores.
    ``n_users``: how many users each validation averages (for :func:`noise_band`);
    ``steps_per_epoch``: optimiser steps in an epoch (for AUTO_PLATEAU_STEPS)."""

    def __init__(self, trainer, n_users: int, steps_per_epoch: int, patience: int | None = None,
                 smooth: bool = True):
        self.trainer, self.n_users, self.steps_per_epoch = trainer, n_users, steps_per_epoch
        self.patience, self.smooth = patience, smooth
        self.chosen_epoch = None

    def __call__(self, epoch, logs):
        if "valid" not in logs:
            return
        epochs, scores = zip(*[(h["epoch"], h["valid"]) for h in self.trainer.history if "valid" in h])
        config = self.trainer.config
        self.chosen_epoch, stop = decide(epochs, scores, self.n_users, config.eval_every, self.steps_per_epoch,
                                         self.patience, self.smooth)
        if stop:
            config.epochs = epoch  # the loop ends after this epoch
            self.trainer.stopped_by = "patience"
