r"""Beyond-accuracy metrics of recommendation lists: novelty, concentration, coverage,
popularity, intra-list diversity and calibration.

With ``n_i`` the number of training users who interacted with item ``i`` (``n_i = 0`` counted
as 1 where a logarithm needs it), ``U`` the training users and ``L_u`` the top-``k`` list of
user ``u`` (empty slots, id ``-1``, ignored):

- ``novelty@k = mean_(u, r) -log2(max(n_(L_u[r]), 1) / |U|)`` over every filled slot
  (self-information of the recommended items, Zhou et al., PNAS 2010);
- ``gini@k = sum_i (2 i - n - 1) c_(i) / (n sum_i c_i)``: Gini coefficient of the
  recommendation counts ``c`` of all ``n`` items (zeros included), sorted ascending;
  0 = every item recommended equally often, ``1 - 1/n`` = one item takes every slot;
- ``coverage@k``: share of items recommended at least once;
- ``avg_popularity@k = mean_(u, r) n_(L_u[r])``;
- ``ild@k`` (``item_features``): mean over users of the mean pairwise cosine distance
  ``1 - cos(f_i, f_j)`` over the pairs ``i < j`` of ``L_u`` (users with fewer than two items
  skipped; a zero feature vector is at distance 1 from everything);
- ``miscalibration@k`` (``item_categories``): Steck (RecSys 2018, "Calibrated
  recommendations"), ``KL(p_u || (1 - a) q_u + a p_u)`` in nats with ``a = 0.01``, ``p_u``
  the category distribution of the user's training items and ``q_u`` that of ``L_u`` (each
  item spreads weight 1 over its categories), averaged over users with a history and a list.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recfb.evaluation._common import check_ks
from recfb.utils.errors import DataError
from recfb.utils.validation import check_csr

__all__ = ["DIVERSITY_METRICS", "diversity_metrics", "gini"]

DIVERSITY_METRICS = ("novelty", "gini", "coverage", "avg_popularity", "ild", "miscalibration")
CALIBRATION_ALPHA = 0.01
_BLOCK_CELLS = 4 * 2**20  # users x k x features floats per ILD block


def gini(counts) -> float:
    """Gini coefficient of non-negative ``counts`` (zeros included): ``sum_i (2i - n - 1) c_(i) /
    (n sum c)`` with ``c`` sorted ascending, ``i = 1..n``; 0 when every count is 0."""
    c = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if c.size and (not np.all(np.isfinite(c)) or c[0] < 0):
        raise DataError(f"counts must be finite and >= 0, got min {c[0]}.")
    total = c.sum()
    if c.size == 0 or total == 0:
        return 0.0
    n = c.size
    return float(((2 * np.arange(1, n + 1) - n - 1) @ c) / (n * total))


def diversity_metrics(recommended_ids, train_X, k=10, item_features=None, item_categories=None,
                      users=None) -> dict:
    """Beyond-accuracy metrics of top-``k`` lists (see the module docstring for the formulas).

    Parameters
    ----------
    recommended_ids : array of int (n_lists, >= k) or (k,) for one list
        Ranked item ids, best first; ``-1`` marks an empty slot. Only the first ``k`` columns
        of each row count (fewer columns: the missing slots are empty).
    train_X : sparse matrix, users x items
        Training interactions: ``n_i`` (item popularity by users) and, for
        ``miscalibration``, each user's history.
    k : int or sequence of int, default 10
        Cut-offs; every metric is reported for each.
    item_features : array (n_items, d), optional
        Item vectors for ``ild@k`` (dense or sparse).
    item_categories : array (n_items,) of int labels or (n_items, n_categories) weights, optional
        Categories for ``miscalibration@k``; a row of weights (genres) is normalised to sum 1,
        an all-zero row means the item has no category.
    users : array of int (n_lists,), optional
        Training-row id of each list (default: list ``r`` is user ``r``); used by
        ``miscalibration@k`` only.

    Returns
    -------
    dict
        ``{"novelty@k", "gini@k", "coverage@k", "avg_popularity@k"}`` for each ``k``, plus
        ``"ild@k"`` with ``item_features`` and ``"miscalibration@k"`` with ``item_categories``,
        as Python floats.
    """
    ks = check_ks(k)
    train = check_csr(train_X, "train_X")
    n_users, n_items = train.shape
    ids = _check_ids(recommended_ids, n_items, ks[-1])
    popularity = item_user_counts(train)
    features = None if item_features is None else _unit_features(item_features, n_items)
    categories = None if item_categories is None else _category_weights(item_categories, n_items)
    rows = _check_users(users, ids.shape[0], n_users) if categories is not None else None
    out = {}
    for c in ks:
        top = ids[:, :c]
        valid = top >= 0
        shown = top[valid]
        counts = np.bincount(shown, minlength=n_items)
        n_pop = popularity[shown].astype(np.float64)
        out[f"novelty@{c}"] = float(np.mean(-np.log2(np.maximum(n_pop, 1.0) / n_users))) if shown.size else 0.0
        out[f"gini@{c}"] = gini(counts)
        out[f"coverage@{c}"] = float((counts > 0).sum() / n_items) if n_items else 0.0
        out[f"avg_popularity@{c}"] = float(n_pop.mean()) if shown.size else 0.0
        if features is not None:
            out[f"ild@{c}"] = _ild(top, features)
        if categories is not None:
            out[f"miscalibration@{c}"] = _miscalibration(top, rows, train, categories)
    return out


def item_user_counts(train: sp.csr_matrix) -> np.ndarray:
    """``n_i``: number of distinct users with a non-zero entry for each item (int64)."""
    X = train
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return np.bincount(X.indices[X.data != 0], minlength=X.shape[1]).astype(np.int64)


def _check_ids(recommended_ids, n_items: int, width: int) -> np.ndarray:
    ids = np.asarray(recommended_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2:
        raise DataError(f"recommended_ids must be 2-D (one ranked list per row), got shape {ids.shape}.")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"recommended_ids must hold integer item ids, got dtype {ids.dtype}.")
    ids = ids.astype(np.int64, copy=False)
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        bad = ids[(ids < -1) | (ids >= n_items)][0]
        raise DataError(f"recommended_ids holds item id {bad}; expected ids in 0..{n_items - 1} "
                        "(train_X's columns) or -1 for an empty slot.")
    if ids.shape[1] < width:
        ids = np.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=-1)
    return ids[:, :width]


def _check_users(users, n_lists: int, n_users: int) -> np.ndarray:
    if users is None:
        if n_lists > n_users:
            raise DataError(f"recommended_ids has {n_lists} lists but train_X only {n_users} users; "
                            "pass users= (the training row of each list).")
        return np.arange(n_lists)
    rows = np.asarray(users)
    if rows.shape != (n_lists,) or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise DataError(f"users must be {n_lists} integer user ids (one per list), got shape {rows.shape}.")
    if rows.size and (rows.min() < 0 or rows.max() >= n_users):
        raise DataError(f"users must be ids in 0..{n_users - 1}, got {rows.min()}..{rows.max()}.")
    return rows.astype(np.int64)


def _unit_features(item_features, n_items: int) -> np.ndarray:
    F = item_features.toarray() if sp.issparse(item_features) else np.asarray(item_features)
    F = F.astype(np.float64)
    if F.ndim != 2 or F.shape[0] != n_items:
        raise DataError(f"item_features must be 2-D with one row per item ({n_items}), got shape {F.shape}.")
    if not np.all(np.isfinite(F)):
        raise DataError("item_features must be finite (found NaN or inf).")
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    return np.divide(F, norms, out=np.zeros_like(F), where=norms > 0)


def _category_weights(item_categories, n_items: int) -> sp.csr_matrix:
    if sp.issparse(item_categories):
        W = check_csr(item_categories, "item_categories").astype(np.float64)
    else:
        C = np.asarray(item_categories)
        if C.ndim == 1:
            if C.shape[0] != n_items or (C.size and not np.issubdtype(C.dtype, np.integer)) or (
                    C.size and C.min() < 0):
                raise DataError(f"item_categories as labels must be {n_items} integers >= 0 (one per item), "
                                f"got shape {C.shape}, dtype {C.dtype}.")
            W = sp.csr_matrix((np.ones(n_items), (np.arange(n_items), C)), shape=(n_items, int(C.max()) + 1))
        else:
            W = sp.csr_matrix(C.astype(np.float64))
    if W.shape[0] != n_items:
        raise DataError(f"item_categories must have one row per item ({n_items}), got {W.shape[0]}.")
    if W.nnz and (not np.all(np.isfinite(W.data)) or W.data.min() < 0):
        raise DataError("item_categories weights must be finite and >= 0.")
    totals = np.asarray(W.sum(axis=1)).ravel()
    return sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)) @ W


def _ild(top: np.ndarray, unit: np.ndarray) -> float:
    """Mean over lists with >= 2 items of the mean pairwise cosine distance."""
    n, width = top.shape
    if width < 2:
        return 0.0
    iu, ju = np.triu_indices(width, 1)
    block = max(1, _BLOCK_CELLS // max(1, width * unit.shape[1]))
    per_list, has = np.zeros(n), np.zeros(n, bool)
    for start in range(0, n, block):  # blocks of users, each fully vectorised
        t = top[start:start + block]
        valid = t >= 0
        G = unit[np.maximum(t, 0)] * valid[..., None]
        cos = np.einsum("bid,bjd->bij", G, G)[:, iu, ju]
        pair_ok = valid[:, iu] & valid[:, ju]
        n_pairs = pair_ok.sum(1)
        dist = np.where(pair_ok, 1.0 - cos, 0.0).sum(1)
        ok = n_pairs > 0
        per_list[start:start + block][ok] = dist[ok] / n_pairs[ok]
        has[start:start + block] = ok
    return float(per_list[has].mean()) if has.any() else 0.0


def _miscalibration(top: np.ndarray, rows: np.ndarray, train: sp.csr_matrix, W: sp.csr_matrix) -> float:
    """Steck's KL(p || (1 - a) q + a p) averaged over lists with a history and an item."""
    n_lists, n_items = top.shape[0], train.shape[1]
    valid = top >= 0
    r = np.repeat(np.arange(n_lists), valid.sum(1))
    L = sp.csr_matrix((np.ones(r.size), (r, top[valid])), shape=(n_lists, n_items))
    history = train[rows].copy()
    history.data = (history.data != 0).astype(np.float64)
    p, q = np.asarray((history @ W).todense()), np.asarray((L @ W).todense())
    p_tot, q_tot = p.sum(1, keepdims=True), q.sum(1, keepdims=True)
    ok = (p_tot[:, 0] > 0) & (q_tot[:, 0] > 0)
    if not ok.any():
        return 0.0
    p, q = p[ok] / p_tot[ok], q[ok] / q_tot[ok]
    mix = (1 - CALIBRATION_ALPHA) * q + CALIBRATION_ALPHA * p
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / np.where(p > 0, mix, 1.0)), 0.0)
    return float(terms.sum(1).mean())
