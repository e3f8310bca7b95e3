"""Index kinds, metrics, their parameters with defaults, and device choice: shared by
``ItemIndex`` (building) and ``persist`` (loading) without either importing the other."""
from __future__ import annotations

from recfb.serving import _faiss
from recfb.utils.device import resolve_device as _resolve
from recfb.utils.validation import check_positive_int

KINDS = ("exact", "hnsw", "ivf")
METRICS = ("ip", "l2")
#: Index parameters each kind accepts, with the library's defaults (None: chosen from the
#: catalogue size). The HNSW and IVF defaults come from benchmarks/serving.py.
DEFAULT_PARAMS = {
    "exact": {},
    "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 64},
    "ivf": {"nlist": None, "nprobe": None, "pq_m": None, "pq_bits": 8, "train_size": None, "seed": 0},
}


def positive_int(value, name):
    return check_positive_int(value, name)


def resolve_params(kind: str, given: dict, n_items: int, dim: int | None = None) -> dict:
    defaults = DEFAULT_PARAMS[kind]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f"unknown {kind} index parameter(s) {unknown}; valid: {sorted(defaults)}.")
    params = {**defaults, **given}
    if kind == "hnsw":
        for name in ("M", "efConstruction", "efSearch"):
            params[name] = positive_int(params[name], name)
    elif kind == "ivf":
        params["nlist"] = _faiss.default_nlist(n_items) if params["nlist"] is None else positive_int(params["nlist"], "nlist")
        if params["nlist"] > n_items:
            raise ValueError(f"nlist == {params['nlist']}, must be <= the number of items ({n_items}).")
        if params["nprobe"] is None:
            params["nprobe"] = default_nprobe(params["nlist"])
        params["nprobe"] = min(positive_int(params["nprobe"], "nprobe"), params["nlist"])
        if params["pq_m"] is not None:
            params["pq_m"] = positive_int(params["pq_m"], "pq_m")
            if dim is not None and dim % params["pq_m"]:  # faiss aborts with a C++ assertion otherwise
                raise ValueError(f"pq_m == {params['pq_m']}, must divide the vector dimension ({dim}) into "
                                 "equal sub-vectors.")
        elif "pq_bits" in given:
            raise ValueError(f"pq_bits == {given['pq_bits']!r} was given without pq_m; product quantisation needs "
                             "pq_m (sub-vectors per vector) too.")
        params["pq_bits"] = positive_int(params["pq_bits"], "pq_bits")
        if params["pq_bits"] > 16:
            raise ValueError(f"pq_bits == {params['pq_bits']}, must be in 1..16 (bits per sub-vector code).")
        if params["pq_m"] is not None and n_items < 2 ** params["pq_bits"]:
            raise ValueError(f"pq_bits == {params['pq_bits']} trains {2 ** params['pq_bits']} codes per sub-vector but "
                             f"there are only {n_items} items to train on; lower pq_bits (<= "
                             f"{max(1, n_items.bit_length() - 1)}).")
    return params


def default_nprobe(nlist: int) -> int:
    """Probe about 1/32 of the lists (at least 8): a recall near 0.95 on clustered data."""
    return int(min(nlist, max(8, nlist // 32)))


def resolve_device(device: str, kind: str) -> str:
    """"auto" -> "cuda" when the chosen kind can run there, else "cpu" (through
    :func:`recfb.utils.device.resolve_device`, told what this kind needs on a GPU)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device == {device!r}, must be 'auto', 'cpu' or 'cuda'.")
    import torch
    if kind == "exact":
        can = torch.cuda.is_available()
        why = "torch sees no CUDA device"
    elif kind == "ivf":
        can = _faiss.faiss_gpu_available()
        why = "this faiss has no GPU support or sees no GPU (install faiss-gpu-cu12 instead of faiss-cpu)"
    else:
        can, why = False, "faiss has no GPU HNSW; use kind='ivf' or 'exact' on a GPU"
    return _resolve(device, available=can, why=f"{why} (kind={kind!r})").type
