r"""Evaluation under missing-not-at-random exposure.

- :func:`mar_ranking_metrics`: a missing-at-random test set (Coat's random test, relevant =
  rating >= ``threshold``) under the full-ranking protocol or Saito's protocol (each user's
  test items ranked among that user's own test items): DCG@k, Recall@k, MAP@k, optionally
  restricted to a popularity bucket (:func:`popularity_buckets`, :func:`metrics_by_popularity`).
- :func:`ips_ranking_metrics`: IPS and SNIPS estimates of ranking metrics from an MNAR click
  log with known propensities, weights capped at ``ip_cap`` (as RecPack's ``ip_cap``).
- :func:`true_relevance_metrics`: the truth those estimate, from a known relevance matrix
  (synthetic and semi-synthetic worlds).

With ``rel_r`` the gain of the item at rank ``r`` and ``n_rel`` the user's relevant items:
``dcg@k = sum_{r<=k} rel_r / log2(r + 1)`` (not normalised, as Saito et al. report it),
``recall@k = sum_{r<=k} rel_r / n_rel``, ``map@k = sum_{r<=k} rel_r * precision@r / min(k, n_rel)``.
Models are reached only through ``recommend`` and ``score`` (this module imports no model).
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from recfb.evaluation._common import MetricResults, check_batch_size, check_ks, check_matrices
from recfb.utils.errors import DataError

__all__ = ["mar_ranking_metrics", "ips_ranking_metrics", "true_relevance_metrics", "popularity_buckets",
           "metrics_by_popularity"]

PROTOCOLS = ("full", "saito")


def _discount(k):
    return 1.0 / np.log2(np.arange(2, k + 2))


def _topk(model, train, users, k, batch_size):
    """Top-k ids (len(users), k) of the full-ranking protocol, train items excluded; -1 = empty."""
    out = np.full((users.size, k), -1, np.int64)
    for start in range(0, users.size, batch_size):
        block = users[start:start + batch_size]
        ids, _ = model.recommend(block, train[block], N=k, filter_already_liked_items=True)
        ids = np.asarray(ids).reshape(block.size, -1)
        out[start:start + block.size, :ids.shape[1]] = ids
    return out


def _gather(matrix, users, ids):
    """``matrix[users[:, None], ids]`` for a CSR or dense matrix; id -1 gives 0."""
    safe = np.maximum(ids, 0)
    if sp.issparse(matrix):
        vals = np.asarray(matrix[np.repeat(users, ids.shape[1]), safe.ravel()]).reshape(ids.shape)
    else:
        vals = matrix[users[:, None], safe]
    return np.where(ids >= 0, vals, 0.0)


def _rank_metrics(gains, n_rel, ks):
    """dcg/recall/map per user from 0/1 gains (n, max k) and relevant counts (n,)."""
    out = {}
    disc = _discount(gains.shape[1])
    cum_hits = np.cumsum(gains, axis=1)
    prec = cum_hits / np.arange(1, gains.shape[1] + 1)
    for k in ks:
        g = gains[:, :k]
        out[f"dcg@{k}"] = g @ disc[:k]
        out[f"recall@{k}"] = g.sum(1) / n_rel
        out[f"map@{k}"] = (g * prec[:, :k]).sum(1) / np.minimum(k, n_rel)
    return out


def _check_threshold(threshold):
    if threshold is not None and not (isinstance(threshold, numbers.Real) and np.isfinite(threshold)):
        raise ValueError(f"threshold == {threshold!r}, must be None or a finite number.")


def _check_protocol(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol == {protocol!r}, must be one of {PROTOCOLS}.")


def mar_ranking_metrics(model, train_X, test_X, k=5, protocol: str = "full", threshold=4.0, relevant_items=None,
                        users=None, batch_size=None, per_user: bool = False) -> MetricResults:
    """DCG@k, Recall@k and MAP@k on a missing-at-random test set.

    Parameters
    ----------
    model : object with ``recommend`` (``"full"``) or ``score(userids, user_items, items=2-D)`` (``"saito"``)
    train_X, test_X : sparse users x items
        ``test_X`` holds the MAR test ratings (or 0/1 labels); an entry is relevant when its
        value is ``>= threshold`` (``threshold=None``: every stored entry is relevant).
    k : int or sequence of int, default 5
    protocol : {"full", "saito"}, default "full"
        ``"full"``: every item except the user's train items is a candidate. ``"saito"``: the
        candidates are the user's own test items (relevant or not), Saito et al.'s protocol.
    relevant_items : bool array (n_items,), optional
        Count only these items as relevant (popularity buckets); the ranking is unchanged.
    users : array of int, optional
        Evaluate these users (default all); users without a relevant test item are skipped.

    Returns
    -------
    MetricResults
        ``dcg@k``, ``recall@k``, ``map@k`` averaged over evaluated users.
    """
    _check_protocol(protocol)
    _check_threshold(threshold)
    ks = check_ks(k)
    train, test = check_matrices(train_X, test_X)
    n_users, n_items = test.shape
    rel = test.copy()
    rel.data = (rel.data >= threshold).astype(np.float32) if threshold is not None else np.ones_like(rel.data)
    if relevant_items is not None:
        mask = np.asarray(relevant_items, bool)
        if mask.shape != (n_items,):
            raise DataError(f"relevant_items must be a bool array of shape ({n_items},), got {mask.shape}.")
        rel.data = rel.data * mask[rel.indices]
    rel.eliminate_zeros()
    n_rel_all = np.diff(rel.indptr)
    asked = np.arange(n_users) if users is None else np.unique(np.asarray(users, np.int64))
    if asked.size and (asked.min() < 0 or asked.max() >= n_users):
        raise DataError(f"users must be ids in 0..{n_users - 1}, got {asked.min()}..{asked.max()}.")
    keep = asked[n_rel_all[asked] > 0]
    bs = check_batch_size(batch_size, n_items)
    K = max(ks)
    if protocol == "full":
        ids = _topk(model, train, keep, K, bs)
        gains = _gather(rel, keep, ids)
    else:
        gains = _saito_gains(model, train, test, rel, keep, K, bs)
    per = _rank_metrics(gains.astype(np.float64), n_rel_all[keep].astype(np.float64), ks)
    values = {name: float(v.mean()) if v.size else 0.0 for name, v in per.items()}
    return MetricResults(values, n_users=int(keep.size), n_skipped=int(asked.size - keep.size),
                         per_user={"users": keep, **per} if per_user else None, protocol=protocol)


def _saito_gains(model, train, test, rel, users, K, bs):
    """Gains of the top-K of each user's own test items, ranked by ``model.score``."""
    n_test = np.diff(test.indptr)
    width = int(n_test[users].max()) if users.size else 0
    gains = np.zeros((users.size, K))
    for start in range(0, users.size, bs):
        block = users[start:start + bs]
        rows = test[block]
        lengths = np.diff(rows.indptr)
        col = np.arange(width)
        valid = col[None, :] < lengths[:, None]
        cand = np.zeros((block.size, width), np.int64)
        cand[valid] = rows.indices
        cand[~valid] = np.repeat(rows.indices[rows.indptr[:-1]], width - lengths)  # padding: the user's first item
        scores = np.asarray(model.score(block, train[block], items=cand), np.float64)
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        top = np.take_along_axis(cand, order, axis=1)
        top = np.where(np.take_along_axis(valid, order, axis=1), top, -1)
        gains[start:start + block.size, :top.shape[1]] = _gather(rel, block, top)
    return gains


def popularity_buckets(train_X, rare_fraction: float = 0.5) -> dict:
    """``{"rare": mask, "popular": mask}`` over items: the ``rare_fraction`` least clicked items
    of ``train_X`` (by number of users; ties broken by item id) and the rest."""
    if not (isinstance(rare_fraction, numbers.Real) and 0 < rare_fraction < 1):
        raise ValueError(f"rare_fraction == {rare_fraction!r}, must be in (0, 1).")
    train, _ = check_matrices(train_X, train_X)
    counts = np.bincount(train.indices, minlength=train.shape[1])
    order = np.argsort(counts, kind="stable")
    rare = np.zeros(train.shape[1], bool)
    rare[order[:int(round(rare_fraction * train.shape[1]))]] = True
    return {"rare": rare, "popular": ~rare}


def metrics_by_popularity(model, train_X, test_X, k=5, protocol: str = "full", threshold=4.0,
                          rare_fraction: float = 0.5) -> dict:
    """:func:`mar_ranking_metrics` on all items and on the rare and popular buckets."""
    out = {"all": mar_ranking_metrics(model, train_X, test_X, k, protocol, threshold)}
    for name, mask in popularity_buckets(train_X, rare_fraction).items():
        out[name] = mar_ranking_metrics(model, train_X, test_X, k, protocol, threshold, relevant_items=mask)
    return out


def _check_cap(ip_cap):
    if ip_cap is not None and (isinstance(ip_cap, bool) or not isinstance(ip_cap, numbers.Real) or not ip_cap >= 1):
        raise ValueError(f"ip_cap == {ip_cap!r}, must be None or a number >= 1 (the largest inverse propensity).")
    return ip_cap


def _propensity_lookup(propensity, shape):
    p = np.asarray(propensity, dtype=np.float64)
    if p.shape not in ((shape[1],), shape):
        raise DataError(f"propensity has shape {p.shape}, expected (n_items,) = ({shape[1]},) or {shape}.")
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        raise DataError(f"propensity == {p[bad].flat[0]}, must be finite and in (0, 1] ({int(bad.sum())} bad values).")
    return p


def ips_ranking_metrics(model, train_X, test_X, propensity, k=5, ip_cap=None, users=None,
                        batch_size=None) -> MetricResults:
    r"""IPS and SNIPS estimates of ranking metrics from an MNAR click log (``test_X``).

    With ``w_ui = min(Y_ui / theta_ui, ip_cap)`` (``Y`` = stored entries of ``test_X``) and
    ``c_k(r) = 1 / log2(r + 1)`` (DCG) or ``1`` (hits) for ``r <= k``, over the users asked
    (default: every row, whether or not it has clicks):

    - ``ips_dcg@k``, ``ips_hits@k = mean_u sum_i w_ui c_k(rank_ui)``: unbiased (no cap) for
      ``mean_u sum_i R_ui c_k(rank_ui)``, the true DCG / hit count of
      :func:`true_relevance_metrics`.
    - ``snips_dcg@k``, ``snips_recall@k = mean_u [sum_i w_ui c_k] / [sum_i w_ui]`` over users
      with a click: the self-normalised estimate of the per-relevant-item average (recall).

    The full-ranking protocol is used (train items excluded). ``propensity`` is per item
    ``(n_items,)`` or per pair ``(n_users, n_items)``.
    """
    ip_cap = _check_cap(ip_cap)
    ks = check_ks(k)
    train, test = check_matrices(train_X, test_X)
    theta = _propensity_lookup(propensity, test.shape)
    n_users, n_items = test.shape
    asked = np.arange(n_users) if users is None else np.unique(np.asarray(users, np.int64))
    w = test.copy()
    w.data = np.ones_like(w.data, dtype=np.float64)
    rows = np.repeat(np.arange(n_users), np.diff(test.indptr))
    w.data = 1.0 / (theta[test.indices] if theta.ndim == 1 else theta[rows, test.indices])
    if ip_cap is not None:
        w.data = np.minimum(w.data, ip_cap)
    K = max(ks)
    ids = _topk(model, train, asked, K, check_batch_size(batch_size, n_items))
    gains = _gather(w, asked, ids)
    total = np.asarray(w.sum(axis=1)).ravel()[asked]
    has = total > 0
    disc = _discount(K)
    values = {}
    for kk in ks:
        dcg = gains[:, :kk] @ disc[:kk]
        hits = gains[:, :kk].sum(1)
        values[f"ips_dcg@{kk}"] = float(dcg.mean()) if asked.size else 0.0
        values[f"ips_hits@{kk}"] = float(hits.mean()) if asked.size else 0.0
        values[f"snips_dcg@{kk}"] = float((dcg[has] / total[has]).mean()) if has.any() else 0.0
        values[f"snips_recall@{kk}"] = float((hits[has] / total[has]).mean()) if has.any() else 0.0
    return MetricResults(values, n_users=int(asked.size), n_skipped=0)


def true_relevance_metrics(model, train_X, relevance, k=5, users=None, batch_size=None) -> MetricResults:
    """``dcg@k = mean_u sum_{r<=k} R_(u, r) / log2(r + 1)`` and ``hits@k`` from a known dense
    relevance matrix (0/1 or probabilities, users x items), full ranking with train items
    excluded, averaged over every user asked: the quantity :func:`ips_ranking_metrics`
    estimates, and the semi-synthetic protocol's target."""
    ks = check_ks(k)
    train, _ = check_matrices(train_X, train_X)
    R = np.asarray(relevance, dtype=np.float64)
    if R.shape != train.shape:
        raise DataError(f"relevance has shape {R.shape}, expected {train.shape} (users x items).")
    asked = np.arange(R.shape[0]) if users is None else np.unique(np.asarray(users, np.int64))
    K = max(ks)
    gains = _gather(R, asked, _topk(model, train, asked, K, check_batch_size(batch_size, R.shape[1])))
    disc = _discount(K)
    values = {}
    for kk in ks:
        values[f"dcg@{kk}"] = float((gains[:, :kk] @ disc[:kk]).mean())
        values[f"hits@{kk}"] = float(gains[:, :kk].sum(1).mean())
    return MetricResults(values, n_users=int(asked.size), n_skipped=0)
