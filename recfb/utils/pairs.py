"""(row, column) pairs as sorted int64 keys ``row * n_cols + col``, and membership tests
against them: the one implementation behind "was this (user, item) in the test set / the
clicks / the excluded items" across evaluation, losses, datasets, serving and the simulator.

Keys are exact for ``n_rows * n_cols < 2**63``; every caller's matrices are far below it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def pair_keys(rows, cols, n_cols: int) -> np.ndarray:
    """``rows * n_cols + cols`` as int64 (broadcasting: rows (n, 1) with cols (n, k) works)."""
    return np.asarray(rows, dtype=np.int64) * np.int64(n_cols) + np.asarray(cols, dtype=np.int64)


def csr_keys(X: sp.csr_matrix) -> np.ndarray:
    """The sorted keys of a CSR matrix's stored entries (its column indices sorted within
    rows, as :func:`recfb.utils.validation.check_csr` leaves them)."""
    rows = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
    return pair_keys(rows, X.indices, X.shape[1])


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Boolean array of ``keys``' shape: which are in ``sorted_keys`` (sorted int64, duplicates
    allowed)."""
    keys = np.asarray(keys, dtype=np.int64)
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, bool)
    pos = np.searchsorted(sorted_keys, keys)
    np.minimum(pos, sorted_keys.size - 1, out=pos)
    return sorted_keys[pos] == keys


def contains_torch(sorted_keys, keys):
    """:func:`contains` for torch tensors (on any device)."""
    import torch
    if sorted_keys.numel() == 0:
        return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    flat = keys.reshape(-1)
    pos = torch.searchsorted(sorted_keys, flat).clamp(max=sorted_keys.numel() - 1)
    return (sorted_keys[pos] == flat).view(keys.shape)
