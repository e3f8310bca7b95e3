r"""Unbiased objectives for missing-not-at-random implicit feedback.

Clicks are ``Y = O * R`` (exposed and relevant), the exposure propensity is
``theta = P(O = 1)``, so ``E[Y / theta] = R``. The *ideal* losses are defined on the unseen
relevance ``R``; the estimators below replace ``R`` by ``Y / theta`` and are unbiased for
them (checked by Monte-Carlo tests in ``tests/losses/test_unbiased.py``).

- :func:`relmf` (Saito et al., WSDM 2020, "Unbiased Recommender Learning from MNAR Implicit
  Feedback"): ``sum_ui (Y/theta) l+(s) + (1 - Y/theta) l-(s)``, log or squared loss.
- :func:`ubpr` (Saito, ICTIR 2020, "Unbiased Pairwise Learning from Biased Implicit
  Feedback"): ``sum_uij (Y_ui/theta_ui)(1 - Y_uj/theta_uj) l(s_ui - s_uj)`` and its
  non-negative variant.
- :func:`dr_relmf`: a clipped doubly-robust variant of Rel-MF that bounds the variance by the
  clip without the clip's bias where the imputation is right (see its docstring).

Clipping ``theta -> max(theta, clip)`` bounds the weights by ``1 / clip`` at the price of a
bias towards the naive loss for items shown less often than ``clip``.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from recfb.losses.base import Objective
from recfb.utils.pairs import contains_torch, csr_keys
from recfb.utils.validation import check_clip, check_propensity

__all__ = ["relmf", "ubpr", "dr_relmf", "ideal_pointwise_loss", "ideal_pairwise_loss", "pointwise_parts",
           "RelMF", "UBPR", "DRRelMF"]

POINTWISE = ("log", "squared")


# ---------------------------------------------------------------------- checks
def _check_prop(theta, name="propensity") -> torch.Tensor:
    """``theta`` as a floating tensor after :func:`recfb.utils.validation.check_propensity`."""
    check_propensity(theta, name)
    theta = torch.as_tensor(theta)
    return theta if torch.is_floating_point(theta) else theta.double()


def _check_loss(loss):
    if loss not in POINTWISE:
        raise ValueError(f"loss == {loss!r}, must be one of {POINTWISE}.")


def _reduce(x, reduction):
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction == {reduction!r}, must be 'mean', 'sum' or 'none'.")


def pointwise_parts(scores: torch.Tensor, loss: str = "log"):
    """``(l+(s), l-(s))``: log loss ``(softplus(-s), softplus(s))`` or squared loss
    ``((1 - sigmoid(s))^2, sigmoid(s)^2)`` (bounded, so a negative weight cannot drive it to -inf)."""
    _check_loss(loss)
    if loss == "log":
        return F.softplus(-scores), F.softplus(scores)
    p = torch.sigmoid(scores)
    return (1 - p) ** 2, p ** 2


# ---------------------------------------------------------------------- functions
def ideal_pointwise_loss(scores, relevance, loss: str = "log", reduction: str = "mean"):
    """The loss Rel-MF estimates: ``R l+(s) + (1 - R) l-(s)`` (``R`` may be a probability)."""
    lp, lm = pointwise_parts(scores, loss)
    return _reduce(relevance * lp + (1 - relevance) * lm, reduction)


def relmf(scores, clicks, propensity, clip=None, loss: str = "log", reduction: str = "mean"):
    r"""Rel-MF loss: ``(Y / theta) l+(s) + (1 - Y / theta) l-(s)`` with ``theta -> max(theta, clip)``.

    Unbiased for :func:`ideal_pointwise_loss` when ``theta`` is the true propensity and
    ``clip`` is None. With ``propensity = 1`` it is the naive pointwise (BCE) loss.

    Shapes: ``scores``, ``clicks`` (0/1) and ``propensity`` broadcast together.
    """
    clip = check_clip(clip)
    theta = _check_prop(propensity).to(scores)
    if clip is not None:
        theta = theta.clamp(min=clip)
    w = clicks / theta
    lp, lm = pointwise_parts(scores, loss)
    return _reduce(w * lp + (1 - w) * lm, reduction)


def dr_relmf(scores, clicks, propensity, imputation, clip=None, loss: str = "log", reduction: str = "mean"):
    r"""Clipped doubly-robust Rel-MF.

    The relevance estimate is ``R_hat = Y / theta_c + (1 - theta / theta_c) r_hat`` with
    ``theta_c = max(theta, clip)`` and an imputed relevance ``r_hat``; the loss is
    ``R_hat l+(s) + (1 - R_hat) l-(s)``. Since ``E[Y / theta_c] = (theta / theta_c) R``,
    ``E[R_hat] = R + (1 - theta / theta_c)(r_hat - R)``: unbiased where the item needs no
    clipping (``theta >= clip``) *or* the imputation is right (doubly robust), while the
    inverse weights stay at most ``1 / clip`` (the clip's variance). With ``r_hat`` the model's
    own detached prediction the expected gradient for log loss is
    ``(theta / theta_c)(sigmoid(s) - R)``: its zero is the ideal one, unlike clipped Rel-MF's
    ``sigmoid(s) = (theta / theta_c) R``.

    Shapes: all arguments broadcast together.
    """
    clip = check_clip(clip)
    theta = _check_prop(propensity).to(scores)
    theta_c = theta if clip is None else theta.clamp(min=clip)
    r_hat = torch.as_tensor(imputation).to(scores)
    est = clicks / theta_c + (1 - theta / theta_c) * r_hat
    lp, lm = pointwise_parts(scores, loss)
    return _reduce(est * lp + (1 - est) * lm, reduction)


def ideal_pairwise_loss(pos_scores, neg_scores, pos_relevance, neg_relevance, reduction: str = "mean"):
    """The loss UBPR estimates: ``R_ui (1 - R_uj) softplus(-(s_ui - s_uj))``.
    Shapes: ``pos_*`` (B,), ``neg_*`` (B, n) -> (B, n) before reduction."""
    pair = F.softplus(-(pos_scores.unsqueeze(-1) - neg_scores))
    return _reduce(pos_relevance.unsqueeze(-1) * (1 - neg_relevance) * pair, reduction)


def ubpr(pos_scores, neg_scores, pos_clicks, neg_clicks, pos_propensity, neg_propensity, clip=None,
         nonnegative: bool = False, beta: float = 0.0, reduction: str = "mean"):
    r"""Unbiased BPR: ``(Y_ui / theta_ui)(1 - Y_uj / theta_uj) softplus(-(s_ui - s_uj))``.

    Unbiased for :func:`ideal_pairwise_loss` over pairs ``i != j`` (independent clicks) with
    true propensities and no clipping. The weight ``1 - Y_uj / theta_uj`` is negative for a
    clicked ``j`` with ``theta_uj < 1``, which makes the loss unbounded below;
    ``nonnegative=True`` floors every pair's term at ``-beta`` (the non-negative estimator of
    the ICTIR paper, ``beta = 0`` by default), so no pair can drive the loss to -inf.

    Shapes: ``pos_*`` (B,), ``neg_*`` (B, n) -> (B, n) before reduction.
    """
    clip = check_clip(clip)
    if not (isinstance(beta, numbers.Real) and beta >= 0):
        raise ValueError(f"beta == {beta!r}, must be >= 0.")
    tp = _check_prop(pos_propensity, "pos_propensity").to(pos_scores)
    tn = _check_prop(neg_propensity, "neg_propensity").to(pos_scores)
    if clip is not None:
        tp, tn = tp.clamp(min=clip), tn.clamp(min=clip)
    w = (pos_clicks / tp).unsqueeze(-1) * (1 - neg_clicks / tn)
    term = w * F.softplus(-(pos_scores.unsqueeze(-1) - neg_scores))
    if nonnegative:
        term = term.clamp(min=-float(beta))
    return _reduce(term, reduction)


# ---------------------------------------------------------------------- objectives
class _PropensityObjective(Objective):
    """Shared set-up: propensities per pair (item vector or users x items matrix), the click set."""

    def __init__(self, propensity="popularity", eta: float = 0.5, clip=None):
        super().__init__()
        self.propensity, self.eta, self.clip = propensity, eta, check_clip(clip)
        if isinstance(propensity, str) and propensity != "popularity":
            raise ValueError(f"propensity == {propensity!r}, must be 'popularity' or an array of propensities.")

    def setup(self, X, device) -> None:
        from recfb.debias import check_propensity, popularity_propensity
        n_users, n_items = X.shape
        if isinstance(self.propensity, str):
            theta = popularity_propensity(X, self.eta)
        else:
            theta = check_propensity(self.propensity)
            if theta.shape not in ((n_items,), (n_users, n_items)):
                raise ValueError(f"propensity has shape {theta.shape}, expected (n_items,) = ({n_items},) or "
                                 f"(n_users, n_items) = {X.shape}.")
        self.theta_ = torch.as_tensor(theta, dtype=torch.float32, device=device)
        counts = np.diff(X.indptr).astype(np.float32)
        self.user_scale_ = torch.as_tensor(n_items / np.maximum(counts, 1), device=device)
        keys = csr_keys(X)
        self.click_keys_ = torch.as_tensor(np.sort(keys), device=device)
        self.n_items_ = n_items

    def _theta(self, users, items):
        t = self.theta_[items] if self.theta_.dim() == 1 else self.theta_[users.view(-1, *([1] * (items.dim() - 1))), items]
        return t

    def _clicked(self, users, items):
        keys = users.view(-1, *([1] * (items.dim() - 1))) * self.n_items_ + items
        return contains_torch(self.click_keys_, keys).to(torch.float32)

    def _clipped(self, t):
        return t if self.clip is None else t.clamp(min=self.clip)


class RelMF(_PropensityObjective):
    r"""Rel-MF over sampled pairs.

    The all-pairs loss splits into a part over every pair and a part over the clicks:
    ``sum_(u,i) [(Y/theta) l+ + (1 - Y/theta) l-] = sum_(u,i) l-(s_ui) + sum_(Y_ui=1) (1/theta)(l+ - l-)``.
    The loop visits every click once per epoch, so the positive part is
    ``(1/theta_ui)(l+(s_ui) - l-(s_ui))`` as is. Negatives ``j`` are uniform over all items
    (observed clicks included, as the first sum needs), drawn for user ``u`` once per click of
    ``u``, so ``sum_j l-(s_uj) = n_items * E_j l-`` is estimated by each of the ``n_u`` draws with
    weight ``n_items / n_u`` (``negative_weight="all"``): the batch loss is then an unbiased
    estimate of the all-pairs loss divided by the number of clicks. A number instead weights
    every sampled negative by it (the naive BCE convention is 1; it reweights users'
    negative parts by their activity).

    Parameters
    ----------
    propensity : "popularity" or array (n_items,) or (n_users, n_items), default "popularity"
    eta : float, default 0.5
        Exponent of the popularity propensity.
    clip : float in (0, 1], optional
    loss : {"log", "squared"}, default "log"
    negative_weight : "all" or float > 0, default "all"
    """

    name = "relmf"
    pointwise = True

    def __init__(self, propensity="popularity", eta: float = 0.5, clip=None, loss: str = "log",
                 negative_weight="all"):
        super().__init__(propensity, eta, clip)
        _check_loss(loss)
        if negative_weight != "all" and not (isinstance(negative_weight, numbers.Real) and negative_weight > 0):
            raise ValueError(f"negative_weight == {negative_weight!r}, must be 'all' or a number > 0.")
        self.loss, self.negative_weight = loss, negative_weight

    def _negative_scale(self, users):
        if self.negative_weight == "all":
            return self.user_scale_[users]
        return torch.full(users.shape, float(self.negative_weight), device=users.device)

    def _negative_terms(self, neg, batch):
        return pointwise_parts(neg, self.loss)[1]

    def forward(self, pos, neg, batch=None):
        theta = self._clipped(self._theta(batch.users, batch.items))
        lp, lm = pointwise_parts(pos, self.loss)
        neg_part = self._negative_terms(neg, batch).mean(dim=1) * self._negative_scale(batch.users)
        return (lp - lm) / theta, neg_part


class DRRelMF(RelMF):
    r"""Clipped doubly-robust Rel-MF over sampled pairs (see :func:`dr_relmf`).

    With ``R_hat = Y / theta_c + (1 - theta/theta_c) r_hat`` the all-pairs loss is
    ``sum_(u,i) [l- + (1 - theta/theta_c) r_hat (l+ - l-)] + sum_(Y=1) (1/theta_c)(l+ - l-)``;
    the first sum is estimated from the uniform negatives as in :class:`RelMF`.
    ``imputation="self"`` uses the model's own detached ``sigmoid(s)``; an array
    ``(n_users, n_items)`` of relevance probabilities (e.g. from a naive model) works too.
    ``clip`` defaults to 0.1 here (without a clip the estimator is plain Rel-MF).
    """

    name = "relmf_dr"

    def __init__(self, propensity="popularity", eta: float = 0.5, clip=0.1, loss: str = "log",
                 negative_weight="all", imputation="self"):
        super().__init__(propensity, eta, clip, loss, negative_weight)
        if isinstance(imputation, str) and imputation != "self":
            raise ValueError(f"imputation == {imputation!r}, must be 'self' or an array of relevance probabilities.")
        self.imputation = imputation

    def setup(self, X, device) -> None:
        super().setup(X, device)
        if not isinstance(self.imputation, str):
            r = np.asarray(self.imputation, np.float32)
            if r.shape != X.shape or not np.all((r >= 0) & (r <= 1)):
                raise ValueError(f"imputation must be a {X.shape} array of probabilities in [0, 1], got shape {r.shape}.")
            self.imputation_ = torch.as_tensor(r, device=device)

    def _negative_terms(self, neg, batch):
        lp, lm = pointwise_parts(neg, self.loss)
        theta = self._theta(batch.users, batch.negatives)
        shrink = 1 - theta / self._clipped(theta)
        if isinstance(self.imputation, str):
            r_hat = torch.sigmoid(neg.detach())
        else:
            r_hat = self.imputation_[batch.users.unsqueeze(1), batch.negatives]
        return lm + shrink * r_hat * (lp - lm)


class UBPR(_PropensityObjective):
    r"""Unbiased BPR over sampled pairs: each click ``(u, i)`` with uniform negatives ``j``,
    ``(1/theta_ui)(1 - Y_uj/theta_uj) softplus(-(s_ui - s_uj))`` averaged over the ``n``
    negatives; ``Y_uj`` is looked up in the training clicks (a clicked ``j`` gets weight
    ``1 - 1/theta_uj <= 0``). ``nonnegative=True`` floors each pair term at ``-beta``.

    Parameters
    ----------
    propensity, eta, clip : as :class:`RelMF`
    nonnegative : bool, default False
    beta : float >= 0, default 0.0
    """

    name = "ubpr"

    def __init__(self, propensity="popularity", eta: float = 0.5, clip=None, nonnegative: bool = False,
                 beta: float = 0.0):
        super().__init__(propensity, eta, clip)
        if not (isinstance(beta, numbers.Real) and beta >= 0):
            raise ValueError(f"beta == {beta!r}, must be >= 0.")
        self.nonnegative, self.beta = nonnegative, beta

    def forward(self, pos, neg, batch=None):
        tp = self._theta(batch.users, batch.items)
        tn = self._theta(batch.users, batch.negatives)
        yn = self._clicked(batch.users, batch.negatives)
        terms = ubpr(pos, neg, torch.ones_like(pos), yn, tp, tn, clip=self.clip, nonnegative=self.nonnegative,
                     beta=self.beta, reduction="none")
        return terms.mean(dim=1), torch.zeros_like(pos)

