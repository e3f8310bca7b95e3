"""faiss index construction, per-call search parameters and GPU helpers.

faiss is imported here only, on first use. Per-call settings (``efSearch``, ``nprobe``, an
id selector) go through faiss ``SearchParameters`` objects instead of being set on the
index, so concurrent searches with different settings never race.
"""
from __future__ import annotations

import math
import threading

import numpy as np

#: faiss GPU indices return at most this many neighbours per query (and probe at most this
#: many lists); larger requests go to the CPU reference index.
GPU_MAX_K = 2048


def faiss_module():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("recfb.serving needs faiss: pip install faiss-cpu (or faiss-gpu-cu12).") from exc
    return faiss


def faiss_metric(metric: str):
    faiss = faiss_module()
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def build_flat(vectors: np.ndarray, metric: str):
    faiss = faiss_module()
    index = faiss.IndexFlatIP(vectors.shape[1]) if metric == "ip" else faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    return index


def build_hnsw(vectors: np.ndarray, metric: str, M: int, efConstruction: int):
    faiss = faiss_module()
    index = faiss.IndexHNSWFlat(vectors.shape[1], M, faiss_metric(metric))
    index.hnsw.efConstruction = efConstruction
    index.add(vectors)
    return index


def default_nlist(n_items: int) -> int:
    """About 4 sqrt(n) lists, but never fewer than 39 training points per list."""
    return int(max(1, min(round(4 * math.sqrt(n_items)), n_items // 39)))


def build_ivf(vectors: np.ndarray, metric: str, nlist: int, pq_m: int | None, pq_bits: int,
              train_size: int | None, seed: int):
    faiss = faiss_module()
    n, d = vectors.shape
    quantizer = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    if pq_m is None:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric(metric))
    else:
        index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, pq_bits, faiss_metric(metric))
    index.cp.seed = seed
    index.cp.niter = 10  # a few more iterations barely move recall and cost minutes at 1M
    n_train = min(n, train_size or 64 * nlist)
    rng = np.random.default_rng(seed)
    sample = vectors if n_train >= n else vectors[np.sort(rng.choice(n, n_train, replace=False))]
    index.train(np.ascontiguousarray(sample))
    index.add(vectors)
    index.nprobe = 1
    return index  # faiss's python layer keeps ``quantizer`` referenced by ``index``


def flat_view(index) -> np.ndarray | None:
    """Zero-copy (n, d) view of the vectors an IndexFlat or IndexHNSWFlat stores, else None.
    The view is valid while ``index`` lives."""
    faiss = faiss_module()
    storage = index
    if isinstance(index, faiss.IndexHNSW):
        storage = faiss.downcast_index(index.storage)
    if not isinstance(storage, faiss.IndexFlat) or storage.ntotal == 0:
        return None
    flat = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * storage.d)
    return np.asarray(flat).reshape(storage.ntotal, storage.d)


def search_params(index, *, efSearch=None, nprobe=None, allowed_bitmap=None):
    """SearchParameters for one call (or None), plus objects that must stay alive during it."""
    faiss = faiss_module()
    keep = []
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()
        if efSearch is not None:
            params.efSearch = int(efSearch)
        else:
            params.efSearch = index.hnsw.efSearch
    elif isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF()
        params.nprobe = int(nprobe if nprobe is not None else index.nprobe)
    else:
        params = faiss.SearchParameters()
    if allowed_bitmap is not None:
        sel = faiss.IDSelectorBitmap(int(index.ntotal), faiss.swig_ptr(allowed_bitmap))
        params.sel = sel
        keep += [sel, allowed_bitmap]
    return params, keep


def allowed_bitmap(n_items: int, banned: np.ndarray) -> np.ndarray:
    allowed = np.ones(n_items, bool)
    allowed[banned] = False
    return np.packbits(allowed, bitorder="little")


# ----------------------------------------------------------------------------- GPU
def faiss_gpu_available() -> bool:
    faiss = faiss_module()
    return hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


class GpuCopy:
    """A faiss GPU copy of a CPU index. faiss GPU resources are not thread-safe, so calls
    are serialised; requests over ``GPU_MAX_K`` are the caller's to send to the CPU index."""

    def __init__(self, cpu_index, device_id: int = 0):  # pragma: no cover - needs a GPU build
        faiss = faiss_module()
        self.resources = faiss.StandardGpuResources()
        self.index = faiss.index_cpu_to_gpu(self.resources, device_id, cpu_index)
        self.lock = threading.Lock()

    def search(self, queries, k, nprobe=None):  # pragma: no cover - needs a GPU build
        faiss = faiss_module()
        with self.lock:
            if nprobe is not None:
                faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", int(nprobe))
            return self.index.search(queries, k)
