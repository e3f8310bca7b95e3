"""Exact sums of float64 arrays that add up the same across any split into shards.

A float sum depends on the order of its terms, so the mean of a metric over users sharded
across ranks would differ from the single-process mean in its last bits. Here every value
is split into integers (``v = (hi * 2**27 + lo) * 2**(e - 53)``, ``hi``, ``lo`` < 2**27)
summed per binary exponent ``e``: integer sums are exact and order-free, they all-reduce as
int64, and :func:`exact_mean` rounds the exact rational once. So the mean is the correctly
rounded mean of the values, the same on one process and on any number of ranks.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

_OFFSET = 1100                 # frexp exponents lie in [-1073, 1024]
_BINS = _OFFSET + 1025
_CHUNK = 2**25                 # float64 bincount of integers < 2**27 stays exact below 2**52


def exact_parts(values) -> np.ndarray:
    """int64 ``(2, 2, _BINS)``: [sign (+, -)][hi, lo][exponent] integer sums of ``values``."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(v).all():
        raise ValueError("exact_parts: values must be finite (got NaN or inf).")
    out = np.zeros((2, 2, _BINS), np.int64)
    for start in range(0, v.size, _CHUNK):
        chunk = v[start:start + _CHUNK]
        mant, expo = np.frexp(np.abs(chunk))
        m = np.ldexp(mant, 53).astype(np.int64)  # exact: a 53-bit integer
        hi, lo = m >> 27, m & (2**27 - 1)
        bins = expo + _OFFSET
        negative = chunk < 0
        signs = ((0, None),) if not negative.any() else ((0, ~negative), (1, negative))
        for s, mask in signs:
            b, h, low = (bins, hi, lo) if mask is None else (bins[mask], hi[mask], lo[mask])
            out[s, 0] += np.bincount(b, weights=h.astype(np.float64), minlength=_BINS).astype(np.int64)
            out[s, 1] += np.bincount(b, weights=low.astype(np.float64), minlength=_BINS).astype(np.int64)
    return out


def exact_total(parts) -> Fraction:
    """The exact sum that :func:`exact_parts` (summed over shards) represents."""
    parts = np.asarray(parts, dtype=np.int64)
    total = 0
    for s, sign in enumerate((1, -1)):
        for b in np.flatnonzero(parts[s, 0] | parts[s, 1]):
            m = int(parts[s, 0, b]) * 2**27 + int(parts[s, 1, b])
            total += sign * m * 2**(int(b) - _OFFSET - 53 + 1200)
    return Fraction(total, 2**1200)


def exact_mean(parts, n: int) -> float:
    """The correctly rounded mean of the ``n`` values whose parts are ``parts``."""
    if n <= 0:
        raise ValueError(f"n == {n}, must be >= 1.")
    return float(exact_total(parts) / n)


def exact_means(columns: dict, n: int, comm=None) -> dict:
    """``{name: correctly rounded mean}`` of each array in ``columns`` (this rank's values),
    with the exact sums all-reduced over ``comm``'s ranks in one collective; ``n`` is the
    number of values over all ranks."""
    names = list(columns)
    parts = np.stack([exact_parts(columns[name]) for name in names]) if names else np.zeros((0, 2, 2, _BINS), np.int64)
    if comm is not None and comm.enabled:
        parts = comm.all_reduce_array(parts, "sum")
    return {name: exact_mean(parts[j], n) for j, name in enumerate(names)}
