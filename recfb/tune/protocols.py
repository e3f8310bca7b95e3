"""Validation protocols of :func:`recfb.tune.search`: how a trial's model is fitted, validated
every epoch (for pruning) and scored.

==============================  ===========================================================
``"full"`` / ``FullRanking()``  :func:`recfb.evaluation.ranking_metrics` on ``valid_X``,
                                ``train_X`` items excluded; ``FullRanking(fold_in=F)`` is
                                strong generalisation (held-out users scored from ``F``)
``"sampled"`` / ``Sampled()``   :func:`recfb.evaluation.sampled_ranking_metrics`: each
                                validation item among ``n_negatives`` sampled items (the
                                same negatives in every trial)
``"loo"`` / ``LeaveOneOut()``   sequential models: ``train_X`` / ``valid_X`` are the train
                                and validation :class:`~recfb.data.Interactions` of
                                ``split.leave_one_out`` (the next item of each history);
                                full ranking, or sampled with ``n_negatives``
``"ips"`` / ``IPS()``           :func:`recfb.evaluation.ips_ranking_metrics` on an MNAR
                                validation click log with propensities (the debiasing
                                objectives; default: popularity propensities of ``train_X``)
``"clean"`` / ``Clean()``       denoisers: full ranking on a *clean* validation matrix
                                (e.g. ``natural_noise_split``'s ratings >= 4; ``Clean(
                                threshold=4)`` keeps the entries of ``valid_X`` >= 4)
==============================  ===========================================================

A metric is ``"name@k"`` over what the protocol's evaluator returns (``Sampled`` also has
``"mrr"``). Every protocol maximises.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from recfb.utils.errors import DataError
from recfb.utils.validation import check_csr, check_positive_int

FULL_METRICS = ("precision", "recall", "calibrated_recall", "ndcg", "map", "mrr", "hit_rate", "coverage")
SAMPLED_METRICS = ("hit_rate", "ndcg", "mrr")
IPS_METRICS = ("ips_dcg", "ips_hits", "snips_dcg", "snips_recall")


class Bound:
    """A protocol bound to one model kind and one data set: what ``fit`` gets and the scorer.

    ``fit_X`` is passed to ``model.fit``; ``valid_kwargs(valid_metric)`` are the extra
    ``fit`` arguments of per-epoch validation (empty for models without epochs);
    ``evaluate(model, ks)`` returns the metrics dict.
    """

    def __init__(self, fit_X, evaluate, valid_kwargs=None):
        self.fit_X = fit_X
        self.evaluate = evaluate
        self._valid_kwargs = valid_kwargs

    def valid_kwargs(self, valid_metric) -> dict:
        return {} if self._valid_kwargs is None else self._valid_kwargs(valid_metric)


class Protocol:
    """Base class. Subclasses set ``name`` and implement :meth:`metric_names` and
    :meth:`_scorer`; :meth:`bind` checks the data once, before any trial."""

    name = "protocol"
    sequential = False

    def metric_names(self) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def unscoped_metrics(self) -> tuple:
        """Metric names valid without ``@k``."""
        return ()

    def parse_metric(self, metric):
        """``"name@k"`` -> (``name@k``, k); unknown names raise ``ValueError`` listing the
        valid ones for this protocol."""
        names = self.metric_names()
        valid = [f"{n}@k" for n in names] + list(self.unscoped_metrics())
        if not isinstance(metric, str):
            raise TypeError(f"metric must be a string such as 'ndcg@10', got {metric!r}.")
        if metric in self.unscoped_metrics():
            return metric, 10
        name, at, k = metric.partition("@")
        if not at or name not in names or not k.isdigit() or int(k) < 1:
            raise ValueError(f"metric == {metric!r} is not a metric of protocol {self.name!r}; valid: "
                             f"{', '.join(valid)} (k an integer >= 1).")
        return f"{name}@{int(k)}", int(k)

    def bind(self, model, train_X, valid_X) -> Bound:
        from recfb.models.sequential import SASRec

        is_seq = isinstance(model, SASRec)
        if is_seq and not self.sequential:
            raise ValueError(f"{type(model).__name__} is a sequential model: use protocol='loo' (LeaveOneOut) with "
                             f"the Interactions of split.leave_one_out, not {self.name!r}.")
        if not is_seq and self.sequential:
            raise ValueError(f"protocol {self.name!r} is for sequential models (SASRec, gSASRec, BERT4Rec); for "
                             f"{type(model).__name__} use 'full' on leave_one_out's matrices.")
        train, valid = self._matrices(train_X, valid_X)
        scorer = self._scorer(train, valid)
        return _bind_matrix_model(model, train, valid, scorer)

    def _matrices(self, train_X, valid_X):
        train = check_csr(_as_matrix(train_X, "train_X"), "train_X", allow_empty=False)
        valid = check_csr(_as_matrix(valid_X, "valid_X"), "valid_X", n_items=train.shape[1], n_rows=train.shape[0])
        if valid.nnz == 0 or not np.any(valid.data):
            raise DataError(f"valid_X is empty ({valid.shape[0]} x {valid.shape[1]}, no stored interaction): "
                            "there is nothing to validate on.")
        return train, valid

    def _scorer(self, train, valid):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not isinstance(v, np.ndarray))
        return f"{type(self).__name__}({args})"


def _as_matrix(X, what):
    from recfb.data import Interactions

    if isinstance(X, Interactions):
        return X.matrix
    if not sp.issparse(X):
        raise TypeError(f"{what} must be a scipy.sparse users x items matrix or recfb.data.Interactions, "
                        f"got {type(X).__name__}.")
    return X


def _bind_matrix_model(model, train, valid, scorer) -> Bound:
    from recfb.models._embedding import EmbeddingRecommender

    valid_kwargs = None
    if isinstance(model, EmbeddingRecommender):
        def valid_kwargs(valid_metric):
            return {"valid_items": valid, "valid_metric": valid_metric}
    return Bound(train, scorer, valid_kwargs)


class FullRanking(Protocol):
    """Full ranking of every item (train items excluded) against ``valid_X``.

    Parameters
    ----------
    users : array of int, optional
        Validate only these users.
    fold_in : csr_matrix, optional
        Strong generalisation: the held-out users' fold-in rows (same shape); each user is
        scored from it (``recalculate_user=True``) and its items are excluded.
    """

    name = "full"

    def __init__(self, users=None, fold_in=None):
        self.users = users
        self.fold_in = fold_in

    def metric_names(self):
        return FULL_METRICS

    def _scorer(self, train, valid):
        from recfb.evaluation import ranking_metrics

        rows = train
        if self.fold_in is not None:
            rows = check_csr(self.fold_in, "fold_in", n_items=train.shape[1], n_rows=train.shape[0])
        recalc = self.fold_in is not None

        def evaluate(model, ks):
            return ranking_metrics(model, rows, valid, k=ks, users=self.users, recalculate_user=recalc)
        return evaluate


class Clean(FullRanking):
    """Clean validation for denoisers: full ranking on a clean ``valid_X`` (the noisy clicks
    train, the validation keeps trusted positives only, as ``natural_noise_split`` or
    DeCA's ModCloth split). ``threshold``: keep only the entries of ``valid_X`` >= it (when
    ``valid_X`` holds ratings); None uses ``valid_X`` as it is."""

    name = "clean"

    def __init__(self, threshold=None, users=None):
        if threshold is not None and not (isinstance(threshold, numbers.Real) and np.isfinite(threshold)):
            raise ValueError(f"threshold == {threshold!r}, must be None or a finite number.")
        super().__init__(users=users)
        self.threshold = threshold

    def _matrices(self, train_X, valid_X):
        train, valid = super()._matrices(train_X, valid_X)
        if self.threshold is not None:
            valid = valid.copy()
            valid.data = np.where(valid.data >= self.threshold, valid.data, 0).astype(np.float32)
            valid.eliminate_zeros()
            if valid.nnz == 0:
                raise DataError(f"valid_X has no entry >= threshold == {self.threshold}: nothing clean to "
                                "validate on.")
        return train, valid


class Sampled(Protocol):
    """Each validation item ranked among ``n_negatives`` items sampled once (``seed``), the
    same in every trial. ``sampler``: "uniform" or "popularity"."""

    name = "sampled"

    def __init__(self, n_negatives: int = 100, sampler: str = "uniform", seed: int = 0):
        from recfb.evaluation.sampled import SAMPLERS

        check_positive_int(n_negatives, "n_negatives")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler == {sampler!r}, must be one of {SAMPLERS}.")
        self.n_negatives, self.sampler, self.seed = n_negatives, sampler, seed

    def metric_names(self):
        return SAMPLED_METRICS

    def unscoped_metrics(self):
        return ("mrr",)

    def _scorer(self, train, valid):
        from recfb.evaluation import sample_negatives, sampled_ranking_metrics

        eval_users = np.flatnonzero(np.diff(valid.indptr))
        negatives = sample_negatives(train, valid, users=eval_users, n_negatives=self.n_negatives,
                                     sampler=self.sampler, seed=self.seed)

        def evaluate(model, ks):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # users with fewer eligible items are ranked against all
                return sampled_ranking_metrics(model, train, valid, k=ks, users=eval_users, negatives=negatives)
        return evaluate


class IPS(Protocol):
    """IPS/SNIPS-estimated metrics on an MNAR validation click log ``valid_X``
    (:func:`recfb.evaluation.ips_ranking_metrics`), as the debiasing benchmark tunes.

    Parameters
    ----------
    propensity : array (n_items,) or (n_users, n_items), optional
        Exposure propensities of the validation log; default
        ``recfb.debias.popularity_propensity(train_X, eta)``.
    ip_cap : float, optional
        Largest inverse propensity (the benchmark uses 100).
    eta : float, default 0.5
        Exponent of the default popularity propensity.
    """

    name = "ips"

    def __init__(self, propensity=None, ip_cap=None, eta: float = 0.5):
        self.propensity, self.ip_cap, self.eta = propensity, ip_cap, eta

    def metric_names(self):
        return IPS_METRICS

    def _scorer(self, train, valid):
        from recfb.debias import popularity_propensity
        from recfb.evaluation import ips_ranking_metrics

        theta = popularity_propensity(train, eta=self.eta) if self.propensity is None else self.propensity
        # propensity shape and values, and the cap, checked before any trial (one user, no model)
        ips_ranking_metrics(_NullModel(), train, valid, theta, k=1, ip_cap=self.ip_cap, users=[0])

        def evaluate(model, ks):
            return ips_ranking_metrics(model, train, valid, theta, k=ks, ip_cap=self.ip_cap)
        return evaluate


class _NullModel:
    """Recommends nothing: lets :class:`IPS` check propensity and cap before any trial."""

    def recommend(self, userids, user_items, N=10, filter_already_liked_items=True):
        n = np.asarray(userids).size
        return np.full((n, N), -1, np.int32), np.full((n, N), -np.inf, np.float32)


class LeaveOneOut(Protocol):
    """Sequential models: ``train_X`` and ``valid_X`` are the train and validation
    :class:`~recfb.data.Interactions` of ``split.leave_one_out`` (``valid_X`` holds each
    user's next item). The validation item is ranked from the fitted history (history
    excluded) among every item, or among ``n_negatives`` uniform items (the SASRec papers'
    sampled protocol) when given."""

    name = "loo"
    sequential = True

    def __init__(self, n_negatives=None, sampler: str = "uniform", seed: int = 0):
        self._sampled = None if n_negatives is None else Sampled(n_negatives, sampler, seed)
        self.n_negatives = n_negatives

    def metric_names(self):
        return FULL_METRICS if self._sampled is None else SAMPLED_METRICS

    def unscoped_metrics(self):
        return () if self._sampled is None else ("mrr",)

    def bind(self, model, train_X, valid_X) -> Bound:
        from recfb.data import Interactions
        from recfb.models.sequential import SASRec

        if not isinstance(model, SASRec):
            return super().bind(model, train_X, valid_X)  # raises: not a sequential model
        for what, X in (("train_X", train_X), ("valid_X", valid_X)):
            if not isinstance(X, Interactions):
                raise TypeError(f"protocol 'loo': {what} must be recfb.data.Interactions (e.g. the train and "
                                f"validation parts of split.leave_one_out), got {type(X).__name__}.")
        if len(train_X) == 0:
            raise DataError("train_X is empty: no sequence to learn from.")
        valid = sp.csr_matrix(valid_X.with_id_space(train_X.user_map, train_X.item_map).matrix, dtype=np.float32)
        if valid.nnz == 0:
            raise DataError("valid_X is empty (no validation item): there is nothing to validate on.")
        # the histories are the train sequences, as the model stores them after fit
        history = sp.csr_matrix(train_X.matrix, dtype=np.float32)
        history.sum_duplicates()
        history.data[:] = 1.0
        inner = FullRanking() if self._sampled is None else self._sampled
        evaluate = inner._scorer(history, valid)

        def valid_kwargs(valid_metric):
            return {"valid_items": valid_X, "valid_metric": valid_metric}
        return Bound(train_X, evaluate, valid_kwargs)


ALIASES = {"full": FullRanking, "sampled": Sampled, "loo": LeaveOneOut, "ips": IPS, "clean": Clean}


def make_protocol(protocol) -> Protocol:
    """A :class:`Protocol` from a name in :data:`ALIASES` or an instance."""
    if isinstance(protocol, Protocol):
        return protocol
    if isinstance(protocol, str) and protocol in ALIASES:
        return ALIASES[protocol]()
    raise ValueError(f"protocol == {protocol!r}, must be one of {tuple(ALIASES)} or a recfb.tune Protocol "
                     "(FullRanking, Sampled, LeaveOneOut, IPS, Clean).")
