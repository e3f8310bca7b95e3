"""T-CE and R-CE (Wang et al., WSDM 2021, "Denoising Implicit Feedback for Recommendation")."""
from __future__ import annotations

import warnings

import torch

from recfb.denoise.base import Denoiser
from recfb.utils.params import Instance, Interval, Options, validate_params


def _fraction(v) -> bool:
    return isinstance(v, float) and 0 < v <= 1


_fraction.description = "a float fraction of the run in (0, 1]"


class _PerInteractionStats(Denoiser):
    """Keeps, per training interaction, the last loss seen and the last decision."""

    def setup(self, users, items, n_users, n_items, total_steps):
        super().setup(users, items, n_users, n_items, total_steps)
        self.last_loss_ = torch.full((self.n_interactions,), float("nan"), device=users.device)
        self.last_weight_ = torch.ones(self.n_interactions, device=users.device)

    def _record(self, index, losses, w):
        self.last_loss_[index] = losses.to(self.last_loss_.dtype)
        self.last_weight_[index] = w.to(self.last_weight_.dtype)

    def state_dict(self):
        return {"last_loss": self.last_loss_.cpu(), "last_weight": self.last_weight_.cpu()}

    def load_state_dict(self, state):
        if state:
            self.last_loss_ = state["last_loss"].to(self.last_loss_.device)
            self.last_weight_ = state["last_weight"].to(self.last_weight_.device)


class TCE(_PerInteractionStats):
    """Truncated loss: in every batch, the ``drop_rate(t)`` fraction of *positives* with the
    largest loss get weight 0 and the rest share the positive part of the loss (its mean over
    the kept positives, as in the paper).

    The drop rate grows linearly from 0 to ``drop_rate`` over the warm-up:
    ``eps(t) = min(drop_rate * t / warmup_steps, drop_rate)``, ``t`` the optimisation step.

    Parameters
    ----------
    drop_rate : float in [0, 1), default 0.2
        ``eps_max``, the final fraction of each batch's positives dropped.
    warmup : float in (0, 1] or int >= 1, default 0.3
        A float is a fraction of the run's steps (0.3: ``eps_max`` is reached 30% into
        training); an int is a number of steps. A warm-up longer than the run warns, since
        the drop rate would never reach ``drop_rate`` (the paper's 30,000-step warm-up does
        not on ml-100k).

    criterion : {"auto", "loss", "score"}, default "auto"
        What ranks the positives. ``"loss"``: the objective's per-positive loss (the paper's,
        for BCE). ``"score"``: the positive's own log loss ``softplus(-s_ui)``, so the
        lowest-scored positives are dropped. ``"auto"``: ``"loss"`` for pointwise objectives
        (for BCE the two are the same), ``"score"`` for pairwise ones (BPR): a pair's loss also
        counts its sampled negative's score, and dropping the largest pair losses removed hard,
        informative pairs (0.84x plain BPR's clean-test NDCG@20 on ml-100k with injected noise,
        against 1.02x ranked by score; benchmarks/RESULTS.md, "Denoiser defaults").

    The fraction is taken of the batch's positives, never of positives and negatives
    together: with several negatives per positive a batch-level drop can remove every positive.
    After training, ``dropped_`` marks the interactions dropped at their last visit.
    """

    #: Default space of :func:`recfb.tune.search` for a model holding this denoiser (tuned as
    #: ``"denoise__drop_rate"``): the paper's knob, around the default.
    search_space = {"drop_rate": ("float", 0.05, 0.5)}

    def __init__(self, drop_rate: float = 0.2, warmup=0.3, criterion: str = "auto"):
        validate_params("TCE", {"drop_rate": drop_rate, "warmup": warmup, "criterion": criterion}, {
            "drop_rate": [Interval("real", 0, 1, closed="left")],
            # a fraction of the run in (0, 1] (float) or a number of steps >= 1 (int)
            "warmup": [Interval("int", 1, None), _fraction],
            "criterion": [Options({"auto", "loss", "score"})]})
        self.drop_rate, self.warmup, self.criterion = float(drop_rate), warmup, criterion

    def ranks_by_score_for(self, objective) -> bool:
        """Whether this run ranks ``objective``'s positives by ``softplus(-s_ui)`` (see
        ``criterion``) rather than by the objective's per-positive loss."""
        if self.criterion == "auto":
            return not getattr(objective, "pointwise", False)
        return self.criterion == "score"

    def bind(self, objective):
        self.by_score_ = self.ranks_by_score_for(objective)

    def setup(self, users, items, n_users, n_items, total_steps):
        super().setup(users, items, n_users, n_items, total_steps)
        if isinstance(self.warmup, float):
            self.warmup_steps_ = max(1, round(self.warmup * total_steps))
        else:
            self.warmup_steps_ = int(self.warmup)
            if self.warmup_steps_ > total_steps:
                warnings.warn(f"TCE warmup == {self.warmup} steps but the run has only {total_steps}: the drop "
                              f"rate ends at {self.drop_rate * total_steps / self.warmup_steps_:.3f}, not "
                              f"{self.drop_rate}. Give warmup as a fraction of the run (e.g. 0.3).", stacklevel=3)

    def rate(self, step: int) -> float:
        """The drop rate at optimisation step ``step``."""
        return min(self.drop_rate * step / self.warmup_steps_, self.drop_rate)

    def weights(self, losses, scores, step, index):
        if getattr(self, "by_score_", False):
            losses = torch.nn.functional.softplus(-scores)
        n = losses.numel()
        n_drop = int(self.rate(step) * n)
        w = torch.ones_like(losses)
        if n_drop > 0:
            w[torch.topk(losses, n_drop, sorted=False).indices] = 0.0
            w *= n / (n - n_drop)  # the mean over the kept positives
        self._record(index, losses, w)
        return w

    @property
    def dropped_(self) -> torch.Tensor:
        return self.last_weight_ == 0

    def noise_scores(self):
        """The last criterion value of every training interaction (the loss, or ``softplus(-s_ui)``
        with ``criterion="score"``; large = noisy)."""
        return self.last_loss_.cpu().numpy()


class RCE(_PerInteractionStats):
    """Reweighted loss: each positive's loss is weighted by ``sigmoid(s_ui) ** beta`` and, with
    negative reweighting (the paper, for the pointwise BCE loss), each sampled negative's by
    ``(1 - sigmoid(s_uj)) ** beta``; weights are detached. Hard (probably noisy) interactions
    get small weights. ``beta = 0`` is the plain loss.

    Parameters
    ----------
    beta : float >= 0, default 0.1
        0.1, not 0.25: once ``MF(loss="bce")`` took its larger L2 on the kernel, 0.25 fell below
        plain BCE on ml-100k with injected noise (clean-validation 0.956-0.985x), while 0.1 beat
        it on validation on all three noisy logs and both seeds (1.002-1.021x; with BPR
        0.998-1.008x); benchmarks/RESULTS.md, "Defaults (issue 13)", fourth session.
    negatives : "auto" or bool, default "auto"
        Reweight the sampled negatives too. ``"auto"``: for pointwise objectives that weight
        their negative terms (BCE, the paper's setting), not for pairwise ones (BPR, where a
        pair's weight would be both items' confidence: on ml-100k with 20% injected noise that
        scored 0.98x plain BPR at the defaults, positives only 1.01x; benchmarks/RESULTS.md).
        ``True`` forces it (refused for objectives that cannot apply it), ``False`` weights the
        positives only.
    """

    #: Default space of :func:`recfb.tune.search` for a model holding this denoiser (tuned as
    #: ``"denoise__beta"``): the paper's knob, log-uniform around the default.
    search_space = {"beta": ("float", 0.02, 0.5, "log")}

    def __init__(self, beta: float = 0.1, negatives="auto"):
        validate_params("RCE", {"beta": beta, "negatives": negatives},
                        {"beta": [Interval("real", 0, None)], "negatives": [Instance(bool), Options({"auto"})]})
        self.beta, self.negatives = float(beta), negatives

    @property
    def reweights_negatives(self) -> bool:
        return self.negatives is True

    def reweights_negatives_for(self, objective) -> bool:
        if self.negatives == "auto":
            return bool(getattr(objective, "pointwise", False) and objective.weights_negatives)
        return bool(self.negatives)

    def negative_weights(self, neg_scores, step):
        if self.negatives is False:
            return None
        return torch.sigmoid(-neg_scores).pow(self.beta)

    def weights(self, losses, scores, step, index):
        w = torch.sigmoid(scores).pow(self.beta)
        self._record(index, losses, w)
        return w

    def noise_scores(self):
        """``1 - weight`` at each interaction's last visit (small weight = likely noise)."""
        return (1.0 - self.last_weight_).cpu().numpy()
