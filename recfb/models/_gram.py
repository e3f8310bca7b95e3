"""Compiled (numba) kernels behind :class:`recfb.models.EASE`.

The Gram matrix ``G = X^T X`` of a users x items CSR matrix costs ``sum_u nnz_u^2``
multiply-adds; ``scipy``'s ``X.T @ X`` spends most of its time building a sparse output.
Here row ``i`` of ``G`` is accumulated straight into dense memory as
``sum_{u in users(i)} x_ui * X[u, :]`` (Gustavson's row-by-row product, with ``users(i)``
read from a CSC index of ``X``). Output rows are split into contiguous chunks of equal
multiply-add work (so power-law popularity does not leave one thread with all of it); a
chunk belongs to one thread, so threads never write the same row.

Kernels are serial numba functions that release the GIL, run over the chunks by a thread
pool (``numba.get_num_threads()`` threads, so ``NUMBA_NUM_THREADS`` applies): that hands
chunks out as threads free up, and compiles several times faster than ``parallel=True``.
When every weight is 1 the kernels skip reading the weights (the Gram is memory-bound).

- :func:`gram_upper` fills the upper triangle of a dense ``G`` (dense EASE).
- :func:`gram_top_neighbors` computes each row of ``G`` in a per-thread sparse accumulator
  and keeps only the items most correlated with it (sparse EASE), never holding ``G``.
- :func:`neighborhood_weights` solves each item's ridge regression on its neighbours, with
  the exact Gram entries gathered in a second pass over the rows of ``G``.
- :func:`weights_from_inverse` turns ``P = (G + Lambda)^-1`` (upper triangle) into the EASE
  weights ``B = I - P diagMat(1 / diag(P))`` in place.
- :func:`csr_times_dense` / :func:`csr_times_csr_dense` score a block of users.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import numba
    from numba import njit
except ImportError as exc:  # pragma: no cover - numba is a dependency of recfb
    raise ImportError("recfb.models.EASE needs numba (pip install numba).") from exc

__all__ = ["canonical", "is_binary", "csc_positions", "row_bounds", "gram_upper", "gram_dense", "gram_top_neighbors",
           "neighborhood_weights", "weights_from_inverse", "csr_times_dense", "csr_times_csr_dense"]


# --------------------------------------------------------------------------- indexing
@njit(cache=True)
def _csc_positions(indptr, indices, n_cols):
    nnz = indices.size
    col_ptr = np.zeros(n_cols + 1, np.int64)
    for p in range(nnz):
        col_ptr[indices[p] + 1] += 1
    for j in range(n_cols):
        col_ptr[j + 1] += col_ptr[j]
    fill = col_ptr[:-1].copy()
    rows = np.empty(nnz, np.int32)
    pos = np.empty(nnz, np.int64)
    for u in range(indptr.size - 1):
        for p in range(indptr[u], indptr[u + 1]):
            q = fill[indices[p]]
            rows[q] = u
            pos[q] = p
            fill[indices[p]] = q + 1
    return col_ptr, rows, pos


def canonical(X):
    """``X`` with sorted indices and no duplicate entries (the kernels rely on both: the
    upper-triangle Gram reads each row onwards from an entry). Copies only when needed."""
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def is_binary(X) -> bool:
    """All stored weights are 1 (the usual implicit feedback): kernels then skip reading them."""
    return bool(X.nnz) and bool(np.all(X.data == 1))


def csc_positions(X):
    """CSC index of a canonical CSR matrix: ``(col_ptr, rows, pos)`` where ``pos`` is each
    entry's position in the CSR arrays (so the row can be read onwards from the entry
    itself). Counting sort, linear time."""
    return _csc_positions(X.indptr, X.indices, X.shape[1])


@njit(cache=True)
def _row_work(indptr, col_ptr, rows, pos, upper):
    n = col_ptr.size - 1
    work = np.zeros(n, np.float64)
    for i in range(n):
        w = 0.0
        for e in range(col_ptr[i], col_ptr[i + 1]):
            u = rows[e]
            w += indptr[u + 1] - (pos[e] if upper else indptr[u])
        work[i] = w + 1.0  # + 1: per-row overhead, so empty rows still split evenly
    return work


def _balanced(work, n_chunks=None) -> np.ndarray:
    """Bounds of contiguous chunks of equal total ``work``: a few per thread, so static
    scheduling balances power-law rows."""
    n = work.size
    if n_chunks is None:
        n_chunks = 8 * n_threads()
    n_chunks = max(1, min(n_chunks, n))
    if n == 0:
        return np.zeros(1, np.int64)
    cum = np.cumsum(work, dtype=np.float64)
    inner = np.searchsorted(cum, cum[-1] * np.arange(1, n_chunks) / n_chunks, side="left") + 1
    return np.unique(np.concatenate([[0], np.minimum(inner, n), [n]])).astype(np.int64)


def n_threads() -> int:
    return int(numba.get_num_threads())


def run_chunks(worker, bounds, *args) -> list:
    """``worker(lo, hi, *args)`` for each chunk ``bounds[c]:bounds[c + 1]``, on a thread pool."""
    chunks = [(int(bounds[c]), int(bounds[c + 1])) for c in range(len(bounds) - 1)]
    threads = min(n_threads(), len(chunks))
    if threads <= 1:
        return [worker(lo, hi, *args) for lo, hi in chunks]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda chunk: worker(chunk[0], chunk[1], *args), chunks))


def row_bounds(X, csc, upper: bool) -> np.ndarray:
    """Split the item rows into contiguous chunks of equal multiply-add work."""
    col_ptr, rows, pos = csc
    return _balanced(_row_work(X.indptr, col_ptr, rows, pos, upper))


# --------------------------------------------------------------------------- dense Gram
@njit(cache=True, nogil=True)
def _gram_upper_chunk(lo, hi, indptr, indices, data, col_ptr, rows, pos, binary, out):
    for i in range(lo, hi):
        row = out[i]
        for e in range(col_ptr[i], col_ptr[i + 1]):
            u = rows[e]
            p0 = pos[e]
            if binary:  # all weights 1: half the memory traffic (no weights read)
                for p in range(p0, indptr[u + 1]):
                    row[indices[p]] += 1.0
            else:
                xi = data[p0]
                for p in range(p0, indptr[u + 1]):
                    row[indices[p]] += xi * data[p]


def gram_upper(X, out: np.ndarray, csc=None) -> np.ndarray:
    """Add the upper triangle (``j >= i``) of ``X^T X`` into ``out`` (n_items x n_items,
    C-ordered, float32 or float64, normally zeros). The strict lower triangle is untouched.
    ``X`` is CSR; pass ``csc`` only for a canonical ``X`` (see :func:`canonical`)."""
    n = X.shape[1]
    if out.shape != (n, n) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous ({n}, {n}) array, got {out.shape}.")
    X = canonical(X)
    csc = csc_positions(X) if csc is None else csc
    data = X.data if X.data.dtype == out.dtype else X.data.astype(out.dtype)
    run_chunks(_gram_upper_chunk, row_bounds(X, csc, upper=True), X.indptr, X.indices, data, *csc, is_binary(X),
               out)
    return out


def gram_dense(X, dtype=np.float32) -> np.ndarray:
    """Full symmetric ``X^T X`` as a dense array (used by tests and small problems)."""
    G = gram_upper(X, np.zeros((X.shape[1],) * 2, dtype))
    return np.triu(G) + np.triu(G, 1).T


# --------------------------------------------------------------------------- sparse Gram
@njit(cache=True)
def _accumulate_row(i, indptr, indices, data, col_ptr, rows, pos, binary, dense, acc, mark, touched):
    """acc += row i of X^T X. Dense rows skip the bookkeeping of touched columns (they
    are scanned whole afterwards); light rows record them. Returns the number touched."""
    nt = 0
    for e in range(col_ptr[i], col_ptr[i + 1]):
        u = rows[e]
        xi = data[pos[e]]
        if dense and binary:
            for p in range(indptr[u], indptr[u + 1]):
                acc[indices[p]] += 1.0
        elif dense:
            for p in range(indptr[u], indptr[u + 1]):
                acc[indices[p]] += xi * data[p]
        else:
            for p in range(indptr[u], indptr[u + 1]):
                j = indices[p]
                if mark[j] != i:
                    mark[j] = i
                    touched[nt] = j
                    nt += 1
                acc[j] += xi * data[p]
    return nt


@njit(cache=True)
def _worse(s1, j1, s2, j2):
    """(s1, j1) ranks below (s2, j2): lower correlation, or equal and a larger item id."""
    return s1 < s2 or (s1 == s2 and j1 > j2)


@njit(cache=True)
def _offer(heap_s, heap_j, size, k, s, j):
    """Keep the k best (correlation, item) pairs in a min-heap of the worst kept on top.
    Most candidates fail the first comparison, so a row costs one pass over its candidates.
    Returns the new size."""
    if size < k:
        pos = size
        size += 1
        while pos > 0:  # sift up
            parent = (pos - 1) // 2
            if not _worse(s, j, heap_s[parent], heap_j[parent]):
                break
            heap_s[pos], heap_j[pos] = heap_s[parent], heap_j[parent]
            pos = parent
        heap_s[pos], heap_j[pos] = s, j
        return size
    if not _worse(heap_s[0], heap_j[0], s, j):
        return size
    pos = 0
    while True:  # replace the root and sift down
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(heap_s[child + 1], heap_j[child + 1], heap_s[child], heap_j[child]):
            child += 1
        if not _worse(heap_s[child], heap_j[child], s, j):
            break
        heap_s[pos], heap_j[pos] = heap_s[child], heap_j[child]
        pos = child
    heap_s[pos], heap_j[pos] = s, j
    return size


@njit(cache=True)
def _heapsort(a, m):
    """Sort a[:m] in place (numba's np.sort costs seconds of compilation)."""
    for start in range(m // 2 - 1, -1, -1):
        _sift_down(a, start, m)
    for end in range(m - 1, 0, -1):
        a[0], a[end] = a[end], a[0]
        _sift_down(a, 0, end)


@njit(cache=True)
def _sift_down(a, root, end):
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and a[child + 1] > a[child]:
            child += 1
        if a[root] >= a[child]:
            return
        a[root], a[child] = a[child], a[root]
        root = child


@njit(cache=True, nogil=True)
def _top_neighbors_chunk(lo, hi, indptr, indices, data, col_ptr, rows, pos, binary, work, inv_sqrt_diag,
                         threshold, nbr_idx, nbr_cnt):
    n = inv_sqrt_diag.size
    k = nbr_idx.shape[1]
    acc = np.zeros(n, data.dtype)
    mark = np.full(n, -1, np.int64)
    touched = np.empty(n, np.int64)
    heap_s = np.empty(k, np.float64)
    heap_j = np.empty(k, np.int64)
    for i in range(lo, hi):
        dense = work[i] * 4 > n
        nt = _accumulate_row(i, indptr, indices, data, col_ptr, rows, pos, binary, dense, acc, mark, touched)
        size = 0
        scale = inv_sqrt_diag[i]
        for t in range(n if dense else nt):
            j = t if dense else touched[t]
            v = acc[j]
            if v == 0:
                continue
            acc[j] = 0
            if j != i and v > 0:
                s = v * scale * inv_sqrt_diag[j]  # cosine correlation
                if s >= threshold:
                    size = _offer(heap_s, heap_j, size, k, s, j)
        for t in range(size):
            nbr_idx[i, t] = heap_j[t]
        nbr_cnt[i] = size
        _heapsort(nbr_idx[i], size)  # by item id


def gram_top_neighbors(X, k: int, threshold: float, dtype=np.float32, csc=None, items=None):
    """Each item's ``k`` most correlated items (cosine ``G_ij / sqrt(G_ii G_jj) >=
    threshold`` over the items it co-occurs with, the item itself excluded; ties go to the
    smaller item id), computing one row of ``G = X^T X`` at a time: memory is
    ``n_items x k`` plus one dense row per thread.

    Returns ``(nbr_idx int32 (n, k), nbr_cnt int64 (n,), diag float64 (n,))``; row ``i``
    holds ``nbr_cnt[i]`` neighbours sorted by item id, ``diag = diag(G)``. ``items=(lo, hi)``
    computes only rows ``lo..hi-1`` (one rank's share; the other rows stay empty).
    """
    n = X.shape[1]
    X = canonical(X)
    csc = csc_positions(X) if csc is None else csc
    col_ptr, rows, pos = csc
    data = X.data if X.data.dtype == dtype else X.data.astype(dtype)
    diag = np.bincount(X.indices, weights=np.square(data.astype(np.float64)), minlength=n)
    with np.errstate(divide="ignore"):
        inv_sqrt_diag = np.where(diag > 0, 1.0 / np.sqrt(diag), 0.0)
    work = _row_work(X.indptr, col_ptr, rows, pos, False)
    nbr_idx = np.zeros((n, k), np.int32)
    nbr_cnt = np.zeros(n, np.int64)
    lo, hi = (0, n) if items is None else (int(items[0]), int(items[1]))
    run_chunks(_top_neighbors_chunk, _balanced(work[lo:hi]) + lo, X.indptr, X.indices, data, col_ptr, rows, pos,
               is_binary(X), work, inv_sqrt_diag, float(threshold), nbr_idx, nbr_cnt)
    return nbr_idx, nbr_cnt, diag


@njit(cache=True)
def _requests(nbr_idx, nbr_cnt, lo, hi, n):
    """For items lo..hi-1: which (item, position) pairs need row a of G, grouped by a."""
    ptr = np.zeros(n + 1, np.int64)
    for i in range(lo, hi):
        for t in range(nbr_cnt[i]):
            ptr[nbr_idx[i, t] + 1] += 1
    for a in range(n):
        ptr[a + 1] += ptr[a]
    fill = ptr[:-1].copy()
    req_item = np.empty(ptr[n], np.int32)
    req_pos = np.empty(ptr[n], np.int32)
    for i in range(lo, hi):
        for t in range(nbr_cnt[i]):
            a = nbr_idx[i, t]
            req_item[fill[a]] = i - lo
            req_pos[fill[a]] = t
            fill[a] += 1
    return ptr, req_item, req_pos


@njit(cache=True, nogil=True)
def _neighborhoods_chunk(lo_row, hi_row, indptr, indices, data, col_ptr, rows, pos, binary, work, nbr_idx, lo,
                         req_ptr, req_item, req_pos, packed, rhs):
    n = col_ptr.size - 1
    acc = np.zeros(n, packed.dtype)
    mark = np.full(n, -1, np.int64)
    touched = np.empty(n, np.int64)
    for a in range(lo_row, hi_row):
        if req_ptr[a + 1] == req_ptr[a]:
            continue
        dense = work[a] * 4 > n
        nt = _accumulate_row(a, indptr, indices, data, col_ptr, rows, pos, binary, dense, acc, mark, touched)
        for r in range(req_ptr[a], req_ptr[a + 1]):
            i = req_item[r]
            t = req_pos[r]
            base = t * (t + 1) // 2
            nbrs = nbr_idx[lo + i]
            out = packed[i]
            for s in range(t + 1):  # row t of item i's lower triangle: G[a, N_i[s]]
                out[base + s] = acc[nbrs[s]]
            rhs[i, t] = acc[lo + i]  # G[a, i]
        if dense:
            acc[:] = 0
        else:
            for t in range(nt):
                acc[touched[t]] = 0


@njit(cache=True, fastmath=True)
def _cholesky(A, m):
    """In place: lower Cholesky factor of A[:m, :m] (rows contiguous, so the inner products
    vectorise). Returns False when A is not (numerically) positive definite."""
    for j in range(m):
        s = A[j, j]
        for q in range(j):
            s -= A[j, q] * A[j, q]
        if not s > 1e-12 * A[j, j]:  # a pivot lost to rounding: singular in all but name
            return False
        d = np.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, m):
            s = A[i, j]
            for q in range(j):
                s -= A[i, q] * A[j, q]
            A[i, j] = s / d
    return True


@njit(cache=True, nogil=True, fastmath=True)
def _solve_chunk(lo_item, hi_item, packed, rhs, nbr_cnt, lo, l2, emphasis, weights):
    k = rhs.shape[1]
    failed = 0
    A = np.empty((k, k), np.float64)
    b = np.empty(k, np.float64)
    for i in range(lo_item, hi_item):
        m = nbr_cnt[lo + i]
        if m == 0:
            continue
        p = packed[i]
        for t in range(m):
            base = t * (t + 1) // 2
            for s in range(t + 1):
                A[t, s] = p[base + s]
            A[t, t] += A[t, t] * emphasis + l2
            b[t] = rhs[i, t]
        if not _cholesky(A, m):
            failed += 1
            continue
        for t in range(m):  # L y = b
            s = b[t]
            for q in range(t):
                s -= A[t, q] * b[q]
            b[t] = s / A[t, t]
        for t in range(m - 1, -1, -1):  # L^T w = y, column-oriented (rows contiguous)
            b[t] /= A[t, t]
            w = b[t]
            for q in range(t):
                b[q] -= A[t, q] * w
        for t in range(m):
            weights[lo + i, t] = b[t]
    return failed


def neighborhood_weights(X, nbr_idx, nbr_cnt, l2: float, emphasis: float, dtype=np.float32,
                         max_bytes: int | None = None, csc=None, items=None):
    """EASE column ``i`` restricted to the neighbours ``N = N_i`` of item ``i``:
    ``B[N, i] = (G_NN + Lambda_N)^-1 G_Ni`` with ``Lambda = l2 + emphasis * diag(G)``, with
    the exact Gram entries: one more pass over the rows of ``G`` serves every item that lists
    row ``a`` its ``G[a, N_i]``, packed as the lower triangle of ``G_NN``. Items go in batches
    whose packed systems fit ``max_bytes``. Solved in float64 by Cholesky, threads over items.

    Returns ``(weights (n, k) dtype aligned with nbr_idx, n_failed)``; ``n_failed`` counts
    systems that were not positive definite (only possible with ``l2 == 0``). ``items=(lo,
    hi)`` solves only items ``lo..hi-1`` (one rank's share; the other rows stay zero)."""
    n, k = nbr_idx.shape
    X = canonical(X)
    csc = csc_positions(X) if csc is None else csc
    col_ptr, rows, pos = csc
    data = X.data if X.data.dtype == dtype else X.data.astype(dtype)
    work = _row_work(X.indptr, col_ptr, rows, pos, False)
    binary = is_binary(X)
    tri = k * (k + 1) // 2
    per_item = (tri + k) * np.dtype(dtype).itemsize
    batch = n if max_bytes is None else int(max(256, min(n, max_bytes // per_item)))
    weights = np.zeros((n, k), dtype)
    failed = 0
    first, last = (0, n) if items is None else (int(items[0]), int(items[1]))
    for lo in range(first, last, batch):
        hi = min(last, lo + batch)
        req_ptr, req_item, req_pos = _requests(nbr_idx, nbr_cnt, lo, hi, n)
        packed = np.empty((hi - lo, tri), dtype)
        rhs = np.empty((hi - lo, k), dtype)
        n_req = np.diff(req_ptr).astype(np.float64)
        row_cost = np.where(n_req > 0, work, 0.0) + n_req * k
        run_chunks(_neighborhoods_chunk, _balanced(row_cost), X.indptr, X.indices, data, col_ptr, rows, pos, binary,
                   work, nbr_idx, lo, req_ptr, req_item, req_pos, packed, rhs)
        cnt = nbr_cnt[lo:hi].astype(np.float64)
        failed += sum(run_chunks(_solve_chunk, _balanced(cnt ** 3 / 6 + cnt ** 2 + 1.0), packed, rhs, nbr_cnt, lo,
                                 float(l2), float(emphasis), weights))
        del packed, rhs
    return weights, int(failed)


# --------------------------------------------------------------------------- weights
@njit(cache=True, nogil=True)
def _weights_chunk(lo, hi, P, d, tile):
    n = P.shape[0]
    n_tiles = (n + tile - 1) // tile
    # Row tile ti costs n_tiles - ti tile pairs: pair ti with n_tiles - 1 - ti to balance chunks.
    for h in range(lo, hi):
        for which in range(2):
            ti = h if which == 0 else n_tiles - 1 - h
            if which == 1 and ti == h:
                break
            i0, i1 = ti * tile, min(n, (ti + 1) * tile)
            for tj in range(ti, n_tiles):
                j0, j1 = tj * tile, min(n, (tj + 1) * tile)
                for i in range(i0, i1):
                    for j in range(max(j0, i + 1), j1):
                        p = P[i, j]
                        P[i, j] = -p / d[j]
                        P[j, i] = -p / d[i]
            for i in range(i0, i1):
                P[i, i] = 0.0


def weights_from_inverse(P: np.ndarray, tile: int = 64) -> np.ndarray:
    """In place: ``P`` (C-ordered, upper triangle valid) becomes
    ``B = I - P diagMat(1 / diag(P))``: ``B_ij = -P_ij / P_jj`` off the diagonal, 0 on it.
    Tiles keep the transposed writes in cache; a thread owns the tile pairs of its row tiles,
    so no two threads write the same entry."""
    d = np.diagonal(P).copy()
    n_tiles = (P.shape[0] + tile - 1) // tile
    half = (n_tiles + 1) // 2  # chunk h handles row tiles h and n_tiles - 1 - h
    run_chunks(_weights_chunk, _balanced(np.ones(half)), P, d, tile)
    return P


# --------------------------------------------------------------------------- scoring
@njit(cache=True, nogil=True)
def _csr_times_dense_chunk(lo, hi, indptr, indices, data, B, out):
    for u in range(lo, hi):
        row = out[u]
        for p in range(indptr[u], indptr[u + 1]):
            x = data[p]
            b = B[indices[p]]
            for j in range(row.size):
                row[j] += x * b[j]


def csr_times_dense(X, B: np.ndarray) -> np.ndarray:
    """``X @ B`` as a dense float32 array (X CSR, B dense), threads over rows of X."""
    out = np.zeros((X.shape[0], B.shape[1]), np.float32)
    data = X.data.astype(B.dtype, copy=False)
    run_chunks(_csr_times_dense_chunk, _balanced(np.diff(X.indptr) + 1.0), X.indptr, X.indices, data, B, out)
    return out


@njit(cache=True, nogil=True)
def _csr_times_csr_dense_chunk(lo, hi, indptr, indices, data, b_indptr, b_indices, b_data, out):
    for u in range(lo, hi):
        row = out[u]
        for p in range(indptr[u], indptr[u + 1]):
            x = data[p]
            a = indices[p]
            for q in range(b_indptr[a], b_indptr[a + 1]):
                row[b_indices[q]] += x * b_data[q]


def csr_times_csr_dense(X, B) -> np.ndarray:
    """``X @ B`` as a dense float32 array (X and B CSR), threads over rows of X."""
    out = np.zeros((X.shape[0], B.shape[1]), np.float32)
    data = X.data.astype(B.dtype, copy=False)
    run_chunks(_csr_times_csr_dense_chunk, _balanced(np.diff(X.indptr) + 1.0), X.indptr, X.indices, data,
               B.indptr, B.indices, B.data, out)
    return out
