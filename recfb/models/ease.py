"""EASE: embarrassingly shallow autoencoder, dense (in-place Cholesky) and sparse."""
from __future__ import annotations

import os
import time
import warnings

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recfb.models.base import Recommender
from recfb.utils.container import pack_csr, unpack_csr
from recfb.utils.device import resolve_device
from recfb.utils.errors import DataError
from recfb.utils.params import Interval, Options
from recfb.utils.validation import check_csr

_GIB = 2.0**30


class EASE(Recommender):
    r"""EASE (Steck, WWW 2019, https://arxiv.org/abs/1905.03375), with the emphasised
    denoising of EDLAE (Steck, NeurIPS 2020, https://arxiv.org/abs/2011.08486).

    An item-item linear autoencoder with a zero diagonal, in closed form:

    ``P = (X^T X + Lambda)^-1``, ``B = I - P diagMat(1 / diag(P))`` (so ``diag(B) = 0``),
    ``Lambda = l2 I + dropout / (1 - dropout) diagMat(diag(X^T X))``; scores ``X_u B``.

    ``method="dense"`` computes ``X^T X`` with a compiled kernel straight into one dense
    items x items array, adds ``Lambda`` in place, and turns it into ``B`` in the same memory
    (LAPACK ``potrf`` + ``potri`` on CPU, torch on CUDA): peak memory is about one items x
    items matrix on the host (two on a GPU). ``method="sparse"`` is the sparse approximation
    of Steck's "Markov Random Fields for Collaborative Filtering" (NeurIPS 2019,
    https://arxiv.org/abs/1910.09645): each item keeps its ``max_neighbors`` most correlated
    items (cosine ``G_ij / sqrt(G_ii G_jj) >= threshold`` among the items it co-occurs
    with), found one row of ``G = X^T X`` at a time without ever holding ``G``; its column
    of ``B`` is the ridge regression on those neighbours, ``B[N, i] = (G_NN + Lambda_N)^-1
    G_Ni``, with the exact ``G_NN`` gathered in a second pass over the rows of ``G``. With
    every item a neighbour this is exact EASE, since column ``i`` of EASE is the ridge
    regression of item ``i`` on all the other items. ``B`` is then a CSR matrix with at most
    ``max_neighbors`` non-zeros per column. Memory: ``n_items x max_neighbors^2 / 2`` values
    for the systems (solved in batches when that exceeds ``max_memory``), no items x items
    array.

    Beyond one process (``fit(..., distributed=True)``; ``None``: when a torch.distributed
    group is initialised): the sparse method's per-item neighbour searches and regressions are sharded
    across the ranks in contiguous item ranges of about equal work and all-gathered, so every
    rank ends with the same ``B`` as one process (bit for bit: each column is computed by the
    same code from the same data). Every rank passes the whole ``user_items``. The dense
    method stays single-process: each rank computes it whole, with no communication. The
    method is chosen once, on rank 0, against the smallest ``max_memory`` of the ranks.

    Parameters
    ----------
    l2 : float, optional
        lambda, the L2 regularisation (>= 0; 0 only works when ``X^T X`` is invertible). None
        (the default): derived from the data at fit (``l2_``), ``70 * sqrt(nnz / n_items) *
        (sum(x^2) / nnz)``: 70 times the square root of the mean item degree, in the units of
        the Gram's diagonal (so rescaling the weights rescales it). The best lambda grows with
        the item degree: a sweep on four datasets (benchmarks/RESULTS.md, "Defaults") put it at
        100 (lastfm-2k, degree 3.7; Beauty, 11), 500 (ml-100k, 42) and 750-1000 (ml-1m, 189);
        the rule gives 135, 232, 451 and 962, each within 2% of the best validation NDCG@10,
        where the literature's constant 500 lost 7% on lastfm-2k and 5% on Beauty.
    dropout : float, default 0.0
        p in [0, 1): EDLAE's emphasis ``p / (1 - p) diag(X^T X)`` added to ``Lambda``.
    dtype : {"float32", "float64"}, default "float32"
        Precision of ``X^T X`` and of the factorisation; ``B`` is stored in it.
    device : {"auto", "cpu", "cuda"}, default "auto"
        Where the dense factorisation runs ("auto": CUDA when torch sees a GPU). The sparse
        method and scoring run on the CPU.
    max_memory : int, optional
        Bytes ``fit`` may allocate. Default: the memory available when ``fit`` starts
        (``MemAvailable``, or the cgroup limit if lower).
    method : {"auto", "dense", "sparse"}, default "auto"
        "auto" is "dense" when its estimated peak fits ``max_memory`` (and, on CUDA, the free
        GPU memory), otherwise "sparse" with a warning. "dense" raises ``MemoryError`` when it
        would not fit.
    max_neighbors : int, default 128
        Sparse method: neighbours kept per item (non-zeros per column of ``B``).
    threshold : float, default 0.0
        Sparse method: minimum cosine correlation for a neighbour, in [0, 1].

    Attributes
    ----------
    weights_ : ndarray (n_items, n_items) or csr_matrix
        ``B``; a user's scores are ``user_items @ weights_``.
    method_, device_ : str
        What ``fit`` used.
    timings_ : dict
        Seconds spent in each stage of the last ``fit``.
    blas_threads_ : int
        Dense method on CPU: BLAS threads of the factorisation (float64: 1, see
        :func:`_invert_cpu`; float32: the BLAS setting, lowered to the cores idle when the
        factorisation starts).

    Shapes: ``user_items`` users x items; ``weights_`` items x items.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`).
    search_space = {"l2": ("float", 1.0, 1e4, "log"), "dropout": ("float", 0.0, 0.6)}

    _parameter_constraints = {
        "l2": [Interval("real", 0, None), None],
        "dropout": [Interval("real", 0, 1, closed="left")],
        "dtype": [Options({"float32", "float64"})],
        "device": [Options({"auto", "cpu", "cuda"})],
        "max_memory": [Interval("int", 1, None), None],
        "method": [Options({"auto", "dense", "sparse"})],
        "max_neighbors": [Interval("int", 1, None)],
        "threshold": [Interval("real", 0, 1)],
    }

    def __init__(self, *, l2: float | None = None, dropout: float = 0.0, dtype: str = "float32",
                 device: str = "auto", max_memory: int | None = None, method: str = "auto",
                 max_neighbors: int = 128, threshold: float = 0.0):
        self.l2 = l2
        self.dropout = dropout
        self.dtype = dtype
        self.device = device
        self.max_memory = max_memory
        self.method = method
        self.max_neighbors = max_neighbors
        self.threshold = threshold

    def derived_params(self, user_items) -> dict:
        if self.l2 is not None:
            return {}
        return {"l2": auto_l2(check_csr(user_items, "user_items", allow_empty=False))}

    # ------------------------------------------------------------------ fit
    def fit(self, user_items, show_progress: bool = True, distributed: bool | None = False) -> "EASE":
        self._validate_params()
        k = int(self.max_neighbors)
        device = _resolve_device(self.device)
        X = self._validate_fit_input(user_items)
        if not np.any(X.data):
            raise DataError(f"user_items has {X.nnz} stored entries but all are zero; nothing to learn from.")
        if not X.has_canonical_format:  # duplicate entries count as their sum, as in scipy
            X = X.copy()
            X.sum_duplicates()
        dtype = np.dtype(self.dtype)
        _check_gram_range(X, dtype)
        self.l2_ = float(self.l2) if self.l2 is not None else auto_l2(X)
        budget = int(self.max_memory) if self.max_memory is not None else available_memory()
        from recfb.distributed import get_comm
        comm = get_comm(distributed)
        if comm.enabled:  # one decision for all ranks, against the tightest memory
            budget = int(comm.all_reduce_array(np.array([budget], np.int64), "min")[0])
            choice = None
            if comm.is_main:
                try:
                    choice = self._choose_method(X, dtype, device, budget, k)
                except MemoryError as exc:  # every rank raises it, none waits for the others
                    choice = ("error", str(exc))
            method, device = comm.broadcast(choice)
            if method == "error":
                raise MemoryError(device)
            if method == "dense":
                device = _resolve_device(self.device)
        else:
            method, device = self._choose_method(X, dtype, device, budget, k)
        self.method_, self.device_ = method, device
        stages = ["gram", "invert", "weights"] if method == "dense" else ["neighbors", "solve", "weights"]
        bar = tqdm(total=len(stages), desc=f"EASE ({method}, {device})", disable=not (show_progress and comm.is_main),
                   leave=False)
        times = {}
        clock = [time.perf_counter()]

        def stage_done(name):
            now = time.perf_counter()
            times[name] = now - clock[0]
            clock[0] = now
            bar.update()

        if method == "dense":
            self.weights_ = self._fit_dense(X, dtype, device, stage_done)
        else:
            self.weights_ = self._fit_sparse(X, dtype, budget, min(k, max(self.n_items_ - 1, 1)), stage_done, comm)
        bar.close()
        W = self.weights_.data if sp.issparse(self.weights_) else self.weights_
        if not np.isfinite(W).all():
            raise DataError(f"EASE produced non-finite weights ({self.dtype}, l2={self.l2_}): X^T X + Lambda is too "
                            "ill-conditioned for this precision. Rescale the weights (e.g. binarize or log1p), "
                            "raise l2, or use dtype='float64'.")
        self.timings_ = times
        return self

    def _choose_method(self, X, dtype, device, budget, k):
        """The memory guard: estimate each method's peak before allocating anything."""
        n = self.n_items_
        dense_bytes = _dense_peak_bytes(n, X.nnz, dtype, device)
        gpu_free = _gpu_free_bytes() if device == "cuda" else None
        dense_gpu_bytes = 2 * n * n * dtype.itemsize
        method = self.method
        if method == "auto":
            fits = dense_bytes <= budget and (gpu_free is None or dense_gpu_bytes <= gpu_free)
            method = "dense" if fits else "sparse"
            if not fits:
                warnings.warn(f"EASE: the dense method needs about {dense_bytes / _GIB:.2f} GiB for {n} items"
                              f"{'' if gpu_free is None else f' ({dense_gpu_bytes / _GIB:.2f} GiB on the GPU)'}, "
                              f"over max_memory = {budget / _GIB:.2f} GiB; using method='sparse' "
                              f"(max_neighbors={k}) instead.", stacklevel=3)
        if method == "dense":
            if dense_bytes > budget:
                raise MemoryError(f"EASE(method='dense') needs about {dense_bytes / _GIB:.2f} GiB for {n} items "
                                  f"({self.dtype}), over max_memory = {budget / _GIB:.2f} GiB. Use "
                                  "method='sparse' (or 'auto'), dtype='float32', or raise max_memory.")
            if gpu_free is not None and dense_gpu_bytes > gpu_free:
                raise MemoryError(f"EASE(method='dense', device='cuda') needs about {dense_gpu_bytes / _GIB:.2f} GiB "
                                  f"of GPU memory for {n} items, but {gpu_free / _GIB:.2f} GiB is free. Use "
                                  "device='cpu' or method='sparse'.")
            return method, device
        sparse_bytes = _sparse_peak_bytes(n, X.nnz, k, dtype)
        if sparse_bytes > budget:
            raise MemoryError(f"EASE(method='sparse') needs about {sparse_bytes / _GIB:.2f} GiB for {n} items "
                              f"with max_neighbors={k}, over max_memory = {budget / _GIB:.2f} GiB; lower "
                              "max_neighbors or raise max_memory.")
        return method, "cpu"

    def _fit_dense(self, X, dtype, device, stage_done) -> np.ndarray:
        from recfb.models import _gram  # compiled kernels: imported when first needed

        n = self.n_items_
        G = np.zeros((n, n), dtype)  # the only items x items array: Gram, then P, then B
        _gram.gram_upper(X, G)
        diagonal = G.reshape(-1)[:: n + 1]  # a view: Lambda is added in place
        diagonal += diagonal * (self.dropout / (1.0 - self.dropout)) + self.l2_
        stage_done("gram")
        if device == "cuda":
            _invert_cuda(G)
            stage_done("invert")
        else:
            self.blas_threads_ = _invert_cpu(G)
            stage_done("invert")
            _gram.weights_from_inverse(G)
        stage_done("weights")
        return G

    def _fit_sparse(self, X, dtype, budget, k, stage_done, comm=None) -> sp.csr_matrix:
        from recfb.models import _gram

        n = self.n_items_
        csc = _gram.csc_positions(X)
        items = None
        if comm is not None and comm.enabled:  # this rank's items: contiguous, about equal work
            work = _gram._row_work(X.indptr, *csc, False) * 2.0 + k**3 / 6.0
            cum = np.cumsum(work)
            cuts = np.searchsorted(cum, cum[-1] * np.arange(comm.world_size + 1) / comm.world_size)
            cuts[0], cuts[-1] = 0, n
            items = (int(cuts[comm.rank]), int(cuts[comm.rank + 1]))
        nbr_idx, nbr_cnt, _ = _gram.gram_top_neighbors(X, k, self.threshold, dtype, csc=csc, items=items)
        stage_done("neighbors")
        packed_budget = int(0.8 * (budget - _sparse_fixed_bytes(n, X.nnz, k, dtype)))
        weights, failed = _gram.neighborhood_weights(X, nbr_idx, nbr_cnt, self.l2_, self.dropout / (1.0 - self.dropout),
                                                     dtype, max_bytes=packed_budget, csc=csc, items=items)
        del csc
        if items is not None:  # every rank gathers every rank's columns, in item order
            lo, hi = items
            failed = int(comm.all_reduce_array(np.array([failed], np.int64), "sum")[0])
            nbr_idx = comm.all_gather_array(nbr_idx[lo:hi])
            nbr_cnt = comm.all_gather_array(nbr_cnt[lo:hi])
            weights = comm.all_gather_array(weights[lo:hi])
        stage_done("solve")
        if failed:
            _check_info(failed, f"Cholesky factorisation of {failed} neighbourhood system(s)")
        B = _columns_to_csr(nbr_idx, weights, nbr_cnt, n)
        stage_done("weights")
        return B

    # ------------------------------------------------------------------ inference
    def _score(self, userids, user_items):
        from recfb.models import _gram

        W = self.weights_
        if sp.issparse(W):
            return _gram.csr_times_csr_dense(user_items, W)
        return _gram.csr_times_dense(user_items, W)

    def _similar_scores(self, itemids):
        W = self.weights_
        rows = W[itemids].toarray() if sp.issparse(W) else W[itemids]
        rows = np.array(rows, dtype=np.float32)
        # Row i of B scores every item for a user who has only item i. Scale it into
        # (-1, 1) and give the item itself 1, so it comes first (as with cosine similarity).
        scale = np.abs(rows).max(axis=1) * np.float32(1.001)
        scale[scale == 0] = 1.0
        rows /= scale[:, None]
        rows[np.arange(itemids.size), itemids] = 1.0
        return rows

    # ------------------------------------------------------------------ persistence
    def _get_state(self):
        if sp.issparse(self.weights_):
            return pack_csr("weights_", self.weights_)
        return {"weights_": self.weights_}

    def _set_state(self, arrays):
        if "weights_" in arrays:
            self.weights_, self.method_ = arrays["weights_"], "dense"
        else:
            self.weights_, self.method_ = unpack_csr("weights_", arrays), "sparse"
        self.device_ = "cpu"


# ---------------------------------------------------------------------- helpers
def _invert_cpu(G: np.ndarray) -> int:
    """Upper triangle of ``G`` (C order) -> upper triangle of ``G^-1``, in place. LAPACK sees
    ``G.T`` (Fortran order, lower triangle), so nothing is copied. Returns the BLAS threads."""
    from scipy.linalg import lapack
    from threadpoolctl import threadpool_limits

    potrf, potri = ((lapack.spotrf, lapack.spotri) if G.dtype == np.float32 else (lapack.dpotrf, lapack.dpotri))
    # float64 runs single-threaded: the bundled OpenBLAS's multithreaded float64 Cholesky
    # crashes on large matrices (benchmarks/RESULTS.md, "Why the code is shaped this way")
    limit = 1 if G.dtype == np.float64 else blas_threads(G.shape[0])
    with threadpool_limits(limits=limit, user_api="blas"):
        L, info = potrf(G.T, lower=1, overwrite_a=1, clean=0)
        _check_info(info, "Cholesky factorisation")
        P, info = potri(L, lower=1, overwrite_c=1)
        _check_info(info, "inversion")
    if not np.shares_memory(P, G):  # pragma: no cover - a scipy that copies after all
        G.T[...] = P
    return limit


def blas_threads(n: int) -> int:
    """BLAS threads for factorising an ``n x n`` matrix: the BLAS's own setting, lowered to
    the number of cores idle right now (sampled for 0.1 s): OpenBLAS threads spin at their
    barriers, so threads on busy cores slow the factorisation down (benchmarks/RESULTS.md,
    "Why the code is shaped this way")."""
    from threadpoolctl import threadpool_info

    current = max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] or [1])
    if current <= 1 or n < 1000:
        return current
    idle = _idle_cores()
    return current if idle is None else max(1, min(current, int(idle + 0.5)))


def _idle_cores(interval: float = 0.1) -> float | None:
    """Cores idle over the next ``interval`` seconds, from ``/proc/stat`` (None elsewhere)."""
    def snapshot():
        with open("/proc/stat") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:9]]
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all (guest time is in user)

    try:
        idle0, total0 = snapshot()
        time.sleep(interval)
        idle1, total1 = snapshot()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return min(cores, (idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1))
    except (OSError, ValueError, ZeroDivisionError, IndexError):
        return None


def _invert_cuda(G: np.ndarray) -> None:
    """Upper triangle of ``G`` -> full ``B`` in place, the factorisation on the GPU."""
    import torch

    host = torch.from_numpy(G)
    A = host.to("cuda")
    U, info = torch.linalg.cholesky_ex(A, upper=True)
    del A
    _check_info(int(info), "Cholesky factorisation")
    P = torch.cholesky_inverse(U, upper=True)
    del U
    P /= -torch.diagonal(P).clone()[None, :]
    P.fill_diagonal_(0.0)
    host.copy_(P)


def _check_gram_range(X: sp.csr_matrix, dtype: np.dtype) -> None:
    """Refuse weights whose Gram matrix ``X^T X`` would overflow ``dtype``: its diagonal (the
    largest entries) is each item's sum of squared weights, computed here in float64, O(nnz)."""
    sq = np.bincount(X.indices, weights=np.square(X.data.astype(np.float64)), minlength=X.shape[1])
    limit = np.finfo(dtype).max / 16  # headroom for the solve
    if not np.isfinite(sq).all() or sq.max() > limit:
        item = int(np.argmax(np.where(np.isfinite(sq), sq, np.inf)))
        raise DataError(f"EASE: the Gram matrix X^T X overflows {dtype}: item {item}'s sum of squared weights is "
                        f"{sq[item]:.3g} (largest weight {X.data.max():.3g}), over {limit:.3g}. Rescale the weights "
                        "(e.g. binarize or log1p)" + (", or use dtype='float64'." if dtype == np.float32 else "."))


def auto_l2(X: sp.csr_matrix) -> float:
    """EASE's default lambda: ``70 * sqrt(nnz / n_items) * (sum(x^2) / nnz)`` (see ``EASE.l2``)."""
    nnz = max(int(X.nnz), 1)
    mean_sq = float(np.dot(X.data.astype(np.float64), X.data.astype(np.float64))) / nnz
    return round(70.0 * float(np.sqrt(nnz / max(X.shape[1], 1))) * mean_sq, 4)


def _check_info(info: int, what: str) -> None:
    if info > 0:
        raise np.linalg.LinAlgError(
            f"EASE {what} failed: X^T X + Lambda is not positive definite (LAPACK info {info}). "
            "Increase l2: l2 == 0 needs every item to have interactions and independent columns.")
    if info < 0:  # pragma: no cover - an argument error inside LAPACK
        raise RuntimeError(f"LAPACK {what} rejected argument {-info}.")


def _columns_to_csr(nbr_idx, weights, nbr_cnt, n: int) -> sp.csr_matrix:
    """Column ``i`` of B holds ``weights[i, :cnt]`` at rows ``nbr_idx[i, :cnt]``."""
    keep = np.arange(nbr_idx.shape[1])[None, :] < nbr_cnt[:, None]
    indptr = np.concatenate([[0], np.cumsum(nbr_cnt)]).astype(np.int64)
    BT = sp.csr_matrix((weights[keep], nbr_idx[keep], indptr), shape=(n, n))
    B = sp.csr_matrix(BT.T.tocsr())
    B.eliminate_zeros()
    B.sort_indices()
    return B


def _resolve_device(device) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device == {device!r}, must be 'auto', 'cpu' or 'cuda'.")
    return resolve_device(device).type


def _gpu_free_bytes() -> int:
    import torch

    return int(torch.cuda.mem_get_info()[0])


def _index_bytes(nnz: int) -> int:
    return nnz * (4 + 8)  # CSC index of X: row (int32) and CSR position (int64) per entry


def _dense_peak_bytes(n: int, nnz: int, dtype: np.dtype, device: str) -> int:
    """Host bytes the dense method allocates: one items x items matrix, the CSC index of X,
    X's weights in ``dtype`` when that is not float32, and slack for LAPACK and the
    per-thread work."""
    matrix = n * n * dtype.itemsize
    data_copy = nnz * dtype.itemsize if dtype != np.float32 else 0
    return matrix + _index_bytes(nnz) + data_copy + 64 * 2**20


def _sparse_fixed_bytes(n: int, nnz: int, k: int, dtype: np.dtype) -> int:
    """Bytes the sparse method allocates besides the packed neighbourhood systems: the CSC
    index of X, neighbour ids and weights, the requests of one pass, B in CSR plus its
    transpose while converting, and each thread's dense row accumulators."""
    k = min(k, max(n - 1, 1))
    s = dtype.itemsize
    lists = n * k * (4 + s) + n * k * 8 + 16 * n
    csr = 2 * n * k * (4 + s + 1) + 16 * n
    per_thread = n * (s + 8 * 4) + 8 * (k * k + k)
    data_copy = nnz * s if dtype != np.float32 else 0
    return _index_bytes(nnz) + lists + csr + _n_threads() * per_thread + data_copy + 64 * 2**20


def _sparse_peak_bytes(n: int, nnz: int, k: int, dtype: np.dtype) -> int:
    """Smallest peak of the sparse method: fixed parts plus the packed lower triangles
    ``G_NN`` (and ``G_Ni``) of a batch of 256 items (more items per batch when memory allows)."""
    k = min(k, max(n - 1, 1))
    per_item = (k * (k + 1) // 2 + k) * dtype.itemsize
    return _sparse_fixed_bytes(n, nnz, k, dtype) + min(n, 256) * per_item


def _n_threads() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:  # pragma: no cover
        return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes this process can still allocate: ``MemAvailable`` (or ``os.sysconf``), capped by
    the cgroup memory limit when one is set."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 2**62
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return int(avail)
