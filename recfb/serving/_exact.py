"""Exact top-k by blocked matrix products in torch (CPU or CUDA).

Why not faiss ``IndexFlat``: faiss-cpu bundles an OpenBLAS that runs a generic kernel on
many CPUs, and its flat search then loses to a plain ``torch.mm`` + ``topk`` (see
benchmarks/serving_results.md). This kernel goes further than ``mm + topk``:

- queries x items are scored one cache-sized tile at a time (``query_block`` x
  ``item_block``), so the score matrix of a million-item catalogue is never materialised;
- within a tile, items are taken in groups of ``recfb.utils.topk.GROUP``; the row-wise top-k of a tile lies
  inside the ``k`` groups with the largest maxima (any other group's maximum is beaten by
  ``k`` items from the chosen groups), so ``topk`` runs over ``k * GROUP`` gathered scores
  instead of the tile's full width. ``amax`` over groups is a fast, vectorised pass.

Scores are higher-is-better: inner products, or ``-||q - x||^2`` for L2 (computed as
``2 q.x - ||x||^2 - ||q||^2``). Excluded and banned items are set to ``-inf`` inside each tile
before selection; rows with fewer than ``k`` eligible items come back padded with id -1 and
score ``-inf``.

Bit-identical scores whatever the load: every score is computed by a matrix product of one
fixed shape, ``GEMM_ROWS`` queries (the last group zero-padded) x one item tile, with tile
edges fixed by the catalogue alone, in a thread whose BLAS runs single-threaded. A query's
scores then do not depend on the batch it came in, its position there, the number of threads
or concurrent callers. (Measured with MKL: products of 1-8 rows, or of other widths or thread
counts, differ from each other in the last bit for some dimensions; one fixed shape does not.)

Threads: on CPU the tiles are shared out to a pool of ``torch.get_num_threads()`` worker
threads that each run torch single-threaded (query blocks, or item ranges of one block when
the batch is small), instead of letting every small tile operation fork and join OpenMP
threads: on a busy machine each fork/join can wait milliseconds for a descheduled thread
(benchmarks/RESULTS.md, "Why the code is shaped this way").
"""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from recfb.utils.topk import mask_padding_torch, merge_topk_torch, topk_rows_torch

TILE_ELEMENTS = 256 * 4096
#: queries per matrix product on CPU (the fixed shape that makes scores reproducible)
GEMM_ROWS = 8
#: items per tile on CPU (fixed: tile edges must not depend on the batch)
ITEM_TILE = 8192
NEG_INF = float("-inf")


class ExactSearcher:
    """Holds the item matrix on a device and answers exact top-k queries (read-only, so
    concurrent calls from several threads are safe)."""

    def __init__(self, vectors: np.ndarray, metric: str, device: str = "cpu",
                 query_block: int | None = None, item_block: int | None = None):
        self.metric = metric
        self.device = torch.device(device)
        self.n_items, self.dim = vectors.shape
        self.items = torch.from_numpy(vectors).to(self.device)  # zero-copy on CPU
        self.sq_norms = (self.items * self.items).sum(1) if metric == "l2" else None
        if self.device.type == "cuda":
            # one tile spans the whole catalogue: GPU kernels prefer few large launches; every
            # product has query_block rows (padded), one shape for every call
            self.item_block = item_block or max(self.n_items, 1)
            self.query_block = query_block or max(1, min(4096, (512 << 20) // (4 * max(self.n_items, 1))))
            self.gemm_rows = self.query_block
        else:
            self.item_block = item_block or min(max(self.n_items, 1), ITEM_TILE)
            self.query_block = query_block or 256
            self.gemm_rows = min(GEMM_ROWS, self.query_block)
        # the products' right-hand side, laid out once: (dim, n_items) row-major
        self.items_t = self.items.T.contiguous()

    def _item_block(self, n_rows: int) -> int:
        """Items per tile: fixed per catalogue (never per batch), so that every score comes
        from the same product shape."""
        return self.item_block

    def search(self, queries: np.ndarray, k: int, exclude=None, banned: np.ndarray | None = None):
        """Top-``k`` per row of ``queries`` (float32, n x dim).

        ``exclude`` is a CSR matrix (rows aligned with queries) of items to skip per row;
        ``banned`` a sorted int64 array of items to skip for every row. Returns host arrays
        ``(ids int64, scores float32)`` of shape (n, k); k must be <= n_items.
        """
        n_q = queries.shape[0]
        out_ids = np.empty((n_q, k), np.int64)
        out_scores = np.empty((n_q, k), np.float32)
        item_block = self._item_block(n_q)
        edges = np.arange(0, self.n_items + item_block, item_block).clip(max=self.n_items)
        n_tiles = len(edges) - 1
        banned_t = None
        if banned is not None and banned.size:
            banned_t = (torch.from_numpy(banned).to(self.device), np.searchsorted(banned, edges))
        blocks = [(a, min(n_q, a + self.query_block)) for a in range(0, n_q, self.query_block)]
        # small jobs run inline: handing them to a worker costs more than they take
        big = n_q * self.n_items >= 4 * TILE_ELEMENTS
        pool = _worker_pool() if self.device.type == "cpu" and big else None
        n_workers = 1 if pool is None else pool._max_workers
        # few query blocks: also split each block's item tiles between the workers
        n_parts = 1 if len(blocks) >= n_workers else min(n_tiles, -(-n_workers // max(len(blocks), 1)))
        cuts = np.linspace(0, n_tiles, n_parts + 1).round().astype(int)

        def run(block, part):
            start, stop = block
            with torch.inference_mode(), _serial_blas():
                q = torch.from_numpy(np.ascontiguousarray(queries[start:stop])).to(self.device)
                excl = None if exclude is None else _exclusion_by_column(exclude[start:stop], edges, self.device)
                return self._search_tiles(q, k, excl, banned_t, edges, cuts[part], cuts[part + 1])

        jobs = [(b, p) for b in blocks for p in range(n_parts)]
        if pool is None or len(jobs) == 1:
            results = [run(*job) for job in jobs]
        else:
            results = list(pool.map(lambda job: run(*job), jobs))
        with torch.inference_mode():
            for i, (start, stop) in enumerate(blocks):
                parts = results[i * n_parts:(i + 1) * n_parts]
                ids, scores = merge_topk_torch([p[0] for p in parts], [p[1] for p in parts], k)
                if self.sq_norms is not None:
                    q = torch.from_numpy(np.ascontiguousarray(queries[start:stop])).to(self.device)
                    scores = scores - self._query_sq_norms(q)[:, None]
                ids = mask_padding_torch(ids, scores)
                out_ids[start:stop] = ids.cpu().numpy()
                out_scores[start:stop] = scores.cpu().numpy()
        return out_ids, out_scores

    def _scores(self, q: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """``q @ items[lo:hi].T`` by products of exactly ``gemm_rows`` x (hi - lo): the
        same shape for every call, so the same query gets the same bits in any batch."""
        rows, R = q.shape[0], self.gemm_rows
        padded = -(-rows // R) * R
        if padded != rows:
            q = torch.cat([q, q.new_zeros((padded - rows, q.shape[1]))])
        rhs = self.items_t[:, lo:hi]
        out = torch.empty((padded, hi - lo), dtype=q.dtype, device=q.device)
        for a in range(0, padded, R):  # a handful of products per tile, not a loop over items
            torch.mm(q[a:a + R], rhs, out=out[a:a + R])
        return out[:rows]

    def _query_sq_norms(self, q: torch.Tensor) -> torch.Tensor:
        """``||q||^2`` per row, as the diagonal of fixed-shape ``gemm_rows`` x ``gemm_rows``
        products (a plain sum's reduction order would depend on the batch)."""
        rows, R = q.shape[0], self.gemm_rows
        padded = -(-rows // R) * R
        if padded != rows:
            q = torch.cat([q, q.new_zeros((padded - rows, q.shape[1]))])
        with _serial_blas():
            out = torch.cat([torch.mm(q[a:a + R], q[a:a + R].T).diagonal() for a in range(0, padded, R)])
        return out[:rows]

    def _search_tiles(self, q: torch.Tensor, k: int, excl, banned, edges, first: int, last: int):
        """Partial top-k of one query block over item tiles ``first..last-1`` (global ids)."""
        parts_ids, parts_scores = [], []
        for tile in range(first, last):
            lo, hi = int(edges[tile]), int(edges[tile + 1])
            s = self._scores(q, lo, hi)
            if self.sq_norms is not None:
                s.mul_(2.0).sub_(self.sq_norms[lo:hi])
            if excl is not None:
                r, c, bounds = excl
                a, b = bounds[tile], bounds[tile + 1]
                if b > a:
                    s[r[a:b], c[a:b] - lo] = NEG_INF
            if banned is not None:
                cols, bounds = banned
                a, b = bounds[tile], bounds[tile + 1]
                if b > a:
                    s[:, cols[a:b] - lo] = NEG_INF
            ids, scores = topk_rows_torch(s, min(k, hi - lo))
            parts_ids.append(ids + lo)
            parts_scores.append(scores)
        return merge_topk_torch(parts_ids, parts_scores, k)


# ----------------------------------------------------------------------------- threads
_pools: dict = {}
_pools_lock = threading.Lock()


def _worker_pool():
    """A pool of ``torch.get_num_threads()`` single-threaded torch workers (None for one
    thread, or when this torch build's threading cannot be limited per thread)."""
    n = torch.get_num_threads()
    if n <= 1 or _serial_thread_hooks() is None:
        return None
    with _pools_lock:
        pool = _pools.get(n)
        if pool is None:
            pool = _pools[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="recfb-exact",
                                                  initializer=_make_thread_serial)
        return pool


class _serial_blas:
    """Run the products in this thread single-threaded (OpenMP and MKL limits of this thread
    only, restored afterwards): BLAS splits a product differently by thread count. Pool
    workers already are; a no-op there and where torch uses one thread."""

    def __enter__(self):
        self.saved = None
        hooks = _serial_thread_hooks()
        if hooks is not None and torch.get_num_threads() > 1:
            omp_set, mkl_local, omp_get = hooks
            self.saved = (omp_get(), mkl_local(1) if mkl_local is not None else None)
            if self.saved[0] > 1:
                omp_set(1)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            omp_set, mkl_local, _ = _serial_thread_hooks()
            omp_threads, mkl_threads = self.saved
            if omp_threads > 1:
                omp_set(omp_threads)
            if mkl_local is not None:
                mkl_local(mkl_threads)
        return False


def _serial_thread_hooks():
    """torch's own OpenMP and MKL per-thread limits, when this build has them."""
    global _HOOKS
    if _HOOKS is False:
        try:
            lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
            gomp = ctypes.CDLL(os.path.join(lib_dir, "libgomp.so.1"))
            cpu = ctypes.CDLL(os.path.join(lib_dir, "libtorch_cpu.so"))
            # the C entry point (takes an int); lower-case mkl_* names are the Fortran ones
            mkl_local = getattr(cpu, "MKL_Set_Num_Threads_Local", None)
            parallel = torch.__config__.parallel_info()
            _HOOKS = ((gomp.omp_set_num_threads, mkl_local, gomp.omp_get_max_threads)
                      if "parallel backend: OpenMP" in parallel else None)
        except (OSError, AttributeError):
            _HOOKS = None
    return _HOOKS


_HOOKS = False


def _make_thread_serial() -> None:
    """Make torch ops issued from this thread single-threaded (this thread only): torch sets
    a new thread's OpenMP limit on first use, so trigger that, then lower it."""
    torch.get_num_threads()
    omp_set, mkl_local, _ = _serial_thread_hooks()
    omp_set(1)
    if mkl_local is not None:
        mkl_local(1)


def _exclusion_by_column(rows, edges: np.ndarray, device):
    """(row, column) pairs of a CSR block sorted by column, and where each item tile starts
    in them, for per-tile masking."""
    if rows.nnz == 0:
        return None
    r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    c = rows.indices.astype(np.int64)
    order = np.argsort(c, kind="stable")
    c = c[order]
    return torch.from_numpy(r[order]).to(device), torch.from_numpy(c).to(device), np.searchsorted(c, edges)


def select_topk(scores: np.ndarray, k: int, exclude=None, banned: np.ndarray | None = None):
    """Top-``k`` of a dense (n, n_items) float32 score block (modified in place), with the
    same masking, grouping and padding as :class:`ExactSearcher`."""
    s = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    with torch.inference_mode():
        if exclude is not None and exclude.nnz:
            r = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
            s[torch.from_numpy(r), torch.from_numpy(exclude.indices.astype(np.int64))] = NEG_INF
        if banned is not None and banned.size:
            s[:, torch.from_numpy(banned)] = NEG_INF
        ids, vals = topk_rows_torch(s, k)
        ids = mask_padding_torch(ids, vals)
    return ids.numpy(), vals.numpy()
