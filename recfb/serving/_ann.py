"""Approximate search through a faiss index with per-query exclusions.

faiss takes one ``k`` for a batch and no per-query id filter, so exclusions are honoured by
over-fetching: search with a larger ``k``, drop excluded ids, and re-query only the rows that
were left with fewer than ``k`` items, with ``k + |exclusions of the row|`` (enough whenever
the index returns that many). Rows whose exclusions are a large share of the catalogue, or
that are still short after the re-query, go to an exact fallback.
"""
from __future__ import annotations

import numpy as np

from recfb.serving import _faiss
from recfb.utils.pairs import contains, csr_keys, pair_keys
from recfb.utils.topk import first_k_valid

#: A row whose ``k + |exclusions|`` exceeds this share of the eligible items is answered by
#: the exact fallback: an ANN index asked for that many neighbours is no faster than exact.
EXACT_FALLBACK_FRACTION = 0.05


def ann_search(index, q: np.ndarray, k: int, excl, banned, *, efSearch, nprobe, fallback, gpu=None):
    """Top-``k`` ids (int64, -1 padded) and higher-is-better scores for ``q`` through ``index``.

    ``excl``: CSR pattern of per-row exclusions or None; ``banned``: sorted int64 ids or None;
    ``fallback(rows, k, excl_rows, banned)``: exact answer for a subset of rows.
    """
    faiss = _faiss.faiss_module()
    n_q, n_items = q.shape[0], index.ntotal
    out_ids = np.full((n_q, k), -1, np.int64)
    out_scores = np.full((n_q, k), -np.inf, np.float32)
    n_banned = 0 if banned is None else banned.size
    n_allowed = n_items - n_banned
    if n_q == 0 or n_allowed <= 0:
        return out_ids, out_scores
    if n_banned > n_allowed:  # a graph or list search restricted to a few items is slow and lossy
        return fallback(np.arange(n_q), k, excl, banned)
    bitmap = None if banned is None else _faiss.allowed_bitmap(n_items, banned)
    n_excl = np.zeros(n_q, np.int64) if excl is None else np.diff(excl.indptr)
    need = np.minimum(k + n_excl, n_allowed)
    large = need > EXACT_FALLBACK_FRACTION * n_allowed
    if excl is None:
        large[:] = False  # k alone never sends a row to the fallback

    is_hnsw = isinstance(index, faiss.IndexHNSW)
    ef = efSearch if is_hnsw else 0
    keys = None if excl is None else _row_keys(excl, n_items)

    def run(rows: np.ndarray, kk: int, ef_search=efSearch):
        kk = int(min(kk, n_items))
        qs = np.ascontiguousarray(q[rows])
        if gpu is not None and bitmap is None and kk <= _faiss.GPU_MAX_K and (nprobe or 0) <= _faiss.GPU_MAX_K:
            dist, ids = gpu.search(qs, kk, nprobe)
        else:
            params, keep = _faiss.search_params(index, efSearch=ef_search, nprobe=nprobe, allowed_bitmap=bitmap)
            dist, ids = index.search(qs, kk, params=params)
            del keep
        scores = dist if index.metric_type == faiss.METRIC_INNER_PRODUCT else -dist
        valid = ids >= 0
        if keys is not None:
            valid &= ~_is_excluded(keys, rows, ids, n_items)
        return first_k_valid(ids, scores.astype(np.float32, copy=False), valid, k)

    todo = np.flatnonzero(~large)
    if todo.size:
        # Pass 1: cheap over-fetch. HNSW keeps efSearch candidates anyway, so asking for up
        # to efSearch neighbours costs the same as asking for k.
        k1 = max(k + int(min(n_excl[todo].max(), k)), ef) if excl is not None else max(k, 1)
        if not is_hnsw and excl is not None:
            k1 = int(need[todo].max())  # list scans cost the same for any k; fetch all at once
        ids, scores, short = run(todo, k1)
        out_ids[todo], out_scores[todo] = ids, scores
        retry = todo[short & (need[todo] > min(k1, n_items))]
        still = list(todo[short & (need[todo] <= min(k1, n_items))])
        # Pass 2: re-query short rows with k + |exclusions|, grouped by powers of two of it.
        # HNSW's list is only as good as its tail allows: the wanted items now sit at ranks
        # |exclusions|..k + |exclusions|, so the search beam grows by as much.
        if retry.size:
            buckets = 1 << np.ceil(np.log2(need[retry])).astype(np.int64)
            for b in np.unique(buckets):
                rows = retry[buckets == b]
                kk = int(need[rows].max())
                ids, scores, short = run(rows, kk, None if not is_hnsw else ef + kk - k)
                out_ids[rows], out_scores[rows] = ids, scores
                still.extend(rows[short])
        # Rows still short either really have fewer than k eligible items (padding is the
        # answer) or met an index that returned fewer than asked (IVF with few probes): the
        # exact fallback settles both.
        large[np.asarray(still, np.int64)] = True
    rows = np.flatnonzero(large)
    if rows.size:
        ids, scores = fallback(rows, k, None if excl is None else excl[rows], banned)
        out_ids[rows], out_scores[rows] = ids, scores
    return out_ids, out_scores


def exhaustive_ivf(index, q: np.ndarray, k: int, excl, banned):
    """Probe every list of an IVF index (exact for IVF-Flat) with enough neighbours to cover
    each row's exclusions."""
    n_items = index.ntotal
    n_excl = 0 if excl is None else int(np.diff(excl.indptr).max(initial=0))
    kk = int(min(n_items, k + n_excl))
    bitmap = None if banned is None else _faiss.allowed_bitmap(n_items, banned)
    params, keep = _faiss.search_params(index, nprobe=index.nlist, allowed_bitmap=bitmap)
    dist, ids = index.search(np.ascontiguousarray(q), kk, params=params)
    del keep
    faiss = _faiss.faiss_module()
    scores = (dist if index.metric_type == faiss.METRIC_INNER_PRODUCT else -dist).astype(np.float32, copy=False)
    valid = ids >= 0
    if excl is not None:
        valid &= ~_is_excluded(_row_keys(excl, n_items), np.arange(q.shape[0]), ids, n_items)
    ids, scores, _ = first_k_valid(ids, scores, valid, k)
    return ids, scores


def _row_keys(excl, n_items: int) -> np.ndarray:
    """Sorted ``row * n_items + item`` keys of a CSR pattern with sorted indices."""
    return csr_keys(excl)


def _is_excluded(keys: np.ndarray, rows: np.ndarray, ids: np.ndarray, n_items: int) -> np.ndarray:
    return contains(keys, pair_keys(rows[:, None], np.maximum(ids, 0), n_items))
