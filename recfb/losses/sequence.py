"""Next-item objectives of the sequential models (SASRec, gSASRec, BERT4Rec), usable on any
``(pos, neg)`` scores, MF's pairs included.

Every objective follows :class:`~recfb.losses.base.Objective`: ``objective(pos (B,), neg (B, n),
batch=None) -> (positive part (B,), negative part (B,))``, one row per training position (a
sequence model's target, or a pair model's interaction); the caller sums or averages. They
differ in the negatives they are meant for, which the class attribute ``negatives`` names for
the model that draws them:

- :class:`SeqBCE` (SASRec, Kang & McAuley 2018): ``"history"``, items outside the user's history,
  drawn per position.
- :class:`GBCE` (gSASRec, Petrov & Macdonald 2023) and :class:`SampledSoftmax`: ``"uniform"``,
  uniform items (SASRec draws them per sequence, shared by its positions).
- :class:`FullSoftmax`: ``"catalogue"``, every item; it takes the full logits instead
  (:meth:`FullSoftmax.from_logits`).

:data:`SEQUENCE_OBJECTIVES` maps the sequential models' ``loss=`` names to these classes.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from recfb.losses.base import Objective


def gbce_beta(num_negatives: int, n_items: int, t: float) -> float:
    """gSASRec's exponent of the positive probability: ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``
    with sampling rate ``alpha = num_negatives / (n_items - 1)``; ``t = 0`` gives 1 (plain BCE),
    ``t = 1`` gives ``alpha``."""
    alpha = num_negatives / max(n_items - 1, 1)
    return alpha * (t * (1 - 1 / alpha) + 1 / alpha)


def gbce_loss(pos: torch.Tensor, neg: torch.Tensor, beta: float, neg_weights: torch.Tensor | None = None):
    """Generalised BCE: ``-log sigmoid(s+)^beta - sum_j log(1 - sigmoid(s_j))``.
    pos (B,), neg (B, n) -> (positive part ``beta softplus(-s+)`` (B,), negative part (B,));
    optional ``neg_weights`` (B, n) weight each negative's term (R-CE)."""
    neg_part = F.softplus(neg)
    if neg_weights is not None:
        neg_part = neg_part * neg_weights
    return beta * F.softplus(-pos), neg_part.sum(dim=1)


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the positive among itself and its negatives:
    ``-s+ + log(exp(s+) + sum_j exp(s_j))``. pos (B,), neg (B, n) -> (B,)."""
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device), reduction="none")


class SeqBCE(Objective):
    """SASRec's BCE: ``-log sigmoid(s+) - sum_j log(1 - sigmoid(s_j))`` with negatives drawn
    outside the user's history for every position (the paper: one). The same terms as
    :class:`~recfb.losses.BCE`; R-CE's negative weights apply."""

    name = "seq_bce"
    negatives = "history"
    needs_batch = False
    weights_negatives = True

    def forward(self, pos, neg, batch=None):
        return gbce_loss(pos, neg, 1.0, None if batch is None else batch.neg_weights)


class GBCE(Objective):
    """gBCE (gSASRec, Petrov & Macdonald, RecSys 2023): BCE whose positive term is raised to
    ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``, ``alpha = n / (n_items - 1)`` for ``n``
    uniform negatives per positive, which corrects the overconfidence negative sampling causes
    (``t = 1``: full-softmax-like calibration, ``t = 0``: plain BCE).

    Parameters
    ----------
    t : float, default 0.75
        Calibration, in [0, 1].
    n_items : int, optional
        Catalogue size; set by :meth:`setup` from the training matrix when not given.

    ``n`` is read from the negatives' shape at each call, so the same object serves
    SASRec's shared per-sequence negatives and MF's per-pair ones (``MF(loss="gbce")``).
    """

    name = "gbce"
    negatives = "uniform"
    needs_batch = False
    weights_negatives = True

    def __init__(self, t: float = 0.75, n_items: int | None = None):
        super().__init__()
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"t must be a real number, got {t!r} ({type(t).__name__}).")
        if not (math.isfinite(t) and 0 <= t <= 1):
            raise ValueError(f"t == {t!r}, must be in [0, 1].")
        if n_items is not None and (isinstance(n_items, bool) or not isinstance(n_items, numbers.Integral)):
            raise TypeError(f"n_items must be an int or None, got {n_items!r} ({type(n_items).__name__}).")
        if n_items is not None and n_items < 2:
            raise ValueError(f"n_items == {n_items}, must be >= 2.")
        self.t = float(t)
        self.given_n_items = self.n_items = None if n_items is None else int(n_items)

    def setup(self, X, device) -> None:
        if self.given_n_items is None:  # the catalogue of this fit (an instance may serve several)
            self.n_items = int(X.shape[1])

    def extra_repr(self) -> str:
        return f"t={self.t}" + ("" if self.given_n_items is None else f", n_items={self.given_n_items}")

    def beta(self, num_negatives: int) -> float:
        if self.n_items is None:
            raise RuntimeError("GBCE needs n_items (pass it, or call setup(X, device) first).")
        return gbce_beta(num_negatives, self.n_items, self.t)

    def forward(self, pos, neg, batch=None):
        return gbce_loss(pos, neg, self.beta(neg.shape[1]), None if batch is None else batch.neg_weights)


class SampledSoftmax(Objective):
    """Cross-entropy over the positive and its ``n`` uniform negatives (no correction for the
    sampling). The negative part is zero: the softmax does not split into per-negative terms."""

    name = "sampled_softmax"
    negatives = "uniform"
    needs_batch = False

    def forward(self, pos, neg, batch=None):
        return sampled_softmax_loss(pos, neg), torch.zeros_like(pos)


class FullSoftmax(Objective):
    """Cross-entropy over the whole catalogue (SASRec's ``loss="softmax"``, BERT4Rec).

    :meth:`from_logits` takes the ``(B, n_items)`` logits and target ids (one fused
    cross-entropy); ``forward(pos, neg)`` with ``neg`` the scores of every other item is the
    same quantity written as a sampled softmax over all of them."""

    name = "softmax"
    negatives = "catalogue"
    needs_batch = False

    @staticmethod
    def from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (B, n_items), targets (B,) item ids -> per-position loss (B,)."""
        return F.cross_entropy(logits, targets, reduction="none")

    def forward(self, pos, neg, batch=None):
        return sampled_softmax_loss(pos, neg), torch.zeros_like(pos)


#: the sequential models' ``loss=`` names
SEQUENCE_OBJECTIVES: dict = {"bce": SeqBCE, "gbce": GBCE, "sampled_softmax": SampledSoftmax, "softmax": FullSoftmax}
