"""Calibrating an ANN index to a recall target against exact search.

``ItemIndex.from_vectors(..., target_recall=0.95, queries=Q)`` (and ``from_model``) builds the
HNSW or IVF index as usual, then picks the cheapest search setting (``efSearch`` / ``nprobe``)
whose recall@k against the exact top-k reaches the target:

1. The queries are shuffled with ``seed`` and split in two: a **calibration** half picks the
   setting, a **held-out** half measures the recall that is reported (and stored), so the
   figure is not the one the choice was fitted to.
2. recall@k of a query = |ANN top-k ∩ exact top-k| / k (exact ground truth from the flat
   vectors, the same kernel as ``kind="exact"``), averaged over queries.
3. Settings are searched on a geometric grid by bisection (recall grows with efSearch and
   nprobe). A setting is accepted when the calibration recall minus 1.645 standard errors
   of its mean is >= the target (a one-sided 95 % bound), so the held-out recall meets the
   target too unless the two samples differ.
4. HNSW: when even efSearch = ``max_ef`` misses, the graph is rebuilt with twice ``M`` and
   ``efConstruction`` (up to ``max_M``) and calibrated again. IVF-Flat always reaches any
   target (nprobe = nlist is exhaustive); IVF-PQ may not (its codes are approximate): then
   ``nlist`` is halved (fewer, larger lists) once.

If no setting meets the target the best one is kept, a warning says so, and
``calibration["target_met"]`` is False.
"""
from __future__ import annotations

import warnings

import numpy as np

EF_GRID = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048)
Z_ONE_SIDED_95 = 1.645


def check_target(target_recall) -> float:
    if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float, np.floating)):
        raise TypeError(f"target_recall must be a number in (0, 1], got {type(target_recall).__name__}.")
    t = float(target_recall)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"target_recall == {target_recall!r}, must be in (0, 1].")
    return t


def split_queries(queries: np.ndarray, seed: int, min_each: int = 20):
    """Shuffle and halve ``queries``: (calibration, held-out)."""
    n = queries.shape[0]
    if n < 2 * min_each:
        raise ValueError(f"calibration needs at least {2 * min_each} queries (half to choose the setting, half "
                         f"to measure it on), got {n}.")
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return np.ascontiguousarray(queries[order[:half]]), np.ascontiguousarray(queries[order[half:]])


def per_query_recall(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|found_i ∩ truth_i| / |truth_i| per row of ids (-1 padding never matches)."""
    match = (found[:, :, None] == truth[:, None, :]) & (found[:, :, None] >= 0)
    return match.any(axis=2).sum(axis=1) / np.maximum((truth >= 0).sum(axis=1), 1)


def _grid(lo: int, hi: int) -> list[int]:
    values = sorted({v for v in EF_GRID if lo <= v <= hi} | {lo, hi})
    return values


def _bisect(settings, measure, target):
    """Smallest setting (in ``settings``, recall increasing) whose lower bound meets
    ``target``; returns (setting, mean, tried) with the largest tried setting when none does."""
    tried = {}

    def ok(i):
        if settings[i] not in tried:
            tried[settings[i]] = measure(settings[i])
        mean, se = tried[settings[i]]
        return mean - Z_ONE_SIDED_95 * se >= target

    lo, hi = 0, len(settings) - 1
    if not ok(hi):
        return settings[hi], False, tried
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return settings[lo], True, tried


def calibrate(build, kind: str, params: dict, queries: np.ndarray, truth_fn, target: float, k: int, seed: int,
              max_ef: int = 2048, max_M: int = 64):
    """Build (``build(params) -> ItemIndex``) and calibrate an HNSW or IVF index.

    ``truth_fn(queries, k) -> ids`` gives the exact top-k. Returns ``(index, calibration)``.
    """
    cal_q, held_q = split_queries(queries, seed)
    cal_truth, held_truth = truth_fn(cal_q, k), truth_fn(held_q, k)
    knob = "efSearch" if kind == "hnsw" else "nprobe"
    history = []
    params = dict(params)
    while True:
        index = build(params)
        if kind == "hnsw":
            settings = _grid(max(k, 16), max(max_ef, k))
        else:
            settings = _grid(1, params["nlist"])

        def measure(value, index=index):
            ids, _ = index.search(cal_q, k, **{knob: value})
            r = per_query_recall(ids, cal_truth)
            return float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size)) if r.size > 1 else 0.0

        value, met, tried = _bisect(settings, measure, target)
        build_params = {key: v for key, v in params.items() if key != knob}
        history.append({"params": build_params, "tried": {str(s): round(m, 5) for s, (m, _) in sorted(tried.items())}})
        if met:
            break
        if kind == "hnsw" and params["M"] * 2 <= max_M:
            params["M"] *= 2
            params["efConstruction"] *= 2
            continue
        if kind == "ivf" and params.get("pq_m") is not None and params["nlist"] >= 8 and len(history) == 1:
            params["nlist"] //= 2
            params["nprobe"] = min(params["nprobe"], params["nlist"])
            continue
        break
    index.params[knob] = int(value)
    held_ids, _ = index.search(held_q, k, **{knob: value})
    held = per_query_recall(held_ids, held_truth)
    calibration = {
        "target_recall": target, "k": k, knob: int(value), "recall": round(float(held.mean()), 5),
        "calibration_recall": round(tried[value][0], 5), "n_calibration": int(cal_q.shape[0]),
        "n_heldout": int(held_q.shape[0]), "seed": int(seed), "target_met": bool(met), "history": history,
    }
    if not met:
        warnings.warn(f"{kind} index: no setting reached recall@{k} >= {target} on the calibration queries; kept "
                      f"{knob}={value} (held-out recall {held.mean():.4f}). Build parameters tried: "
                      f"{[h['params'] for h in history]}.", stacklevel=3)
    return index, calibration
