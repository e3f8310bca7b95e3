"""Validation of what callers pass to an index: queries, k, exclusions, filters."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from recfb.utils.errors import DataError
from recfb.utils.validation import check_csr, check_positive_int, check_sparse_structure


def check_queries(queries, dim: int) -> np.ndarray:
    """2-D float32 C-contiguous queries of width ``dim``; other float/int dtypes are converted
    with a warning, NaN/inf and wrong shapes raise DataError."""
    if sp.issparse(queries):
        raise TypeError("this index takes dense query vectors (n x dim float32); sparse rows are for "
                        "item-item indices (index.query_kind == 'history').")
    arr = np.asarray(queries)
    if arr.ndim != 2:
        hint = " (one query: pass queries[None, :])" if arr.ndim == 1 else ""
        raise DataError(f"queries must be 2-D (n_queries x {dim}), got shape {arr.shape}{hint}.")
    if arr.shape[1] != dim:
        raise DataError(f"queries have dimension {arr.shape[1]} but the index holds {dim}-dimensional vectors.")
    if arr.dtype != np.float32:
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"queries must be float32 vectors, got dtype {arr.dtype}.")
        warnings.warn(f"queries were converted from {arr.dtype} to float32.", stacklevel=3)
        arr = arr.astype(np.float32)
    if arr.size and not np.isfinite(arr).all():
        row = int(np.argmax(~np.isfinite(arr).all(axis=1)))
        raise DataError(f"queries contain a non-finite value (NaN or inf) in row {row}.")
    return np.ascontiguousarray(arr)


def check_history(rows, n_items: int) -> sp.csr_matrix:
    """User history rows (queries of an item-item index)."""
    if not sp.issparse(rows):
        raise TypeError("this item-item index takes user history rows as queries: a scipy.sparse matrix "
                        f"(n_queries x {n_items}), e.g. user_items[userids].")
    return check_csr(rows, "queries", n_items=n_items)


def check_k(k, n_items: int) -> int:
    """k >= 1 (an int); values above the catalogue size are clamped to it (documented)."""
    return min(check_positive_int(k, "k"), n_items)


def check_exclude(exclude, n_rows: int, n_items: int) -> sp.csr_matrix | None:
    """Per-query exclusions as a CSR pattern (n_rows x n_items), or None.

    Accepts a sparse matrix with one row per query (its stored entries are excluded, whatever
    their values) or a sequence of ``n_rows`` integer arrays of item ids.
    """
    if exclude is None:
        return None
    if sp.issparse(exclude):
        check_sparse_structure(exclude, "exclude")  # before scipy touches hand-built index arrays
        X = sp.csr_matrix(exclude)
        if X.shape != (n_rows, n_items):
            raise DataError(f"exclude must have one row per query and one column per item: expected shape "
                            f"({n_rows}, {n_items}), got {X.shape}.")
        if not X.has_sorted_indices:
            X = X.sorted_indices()
        return X
    if isinstance(exclude, (list, tuple, np.ndarray)):  # one array of item ids per query
        rows = list(exclude)
    else:
        raise TypeError("exclude must be a scipy.sparse matrix (one row per query) or a list of item-id "
                        f"arrays, got {type(exclude).__name__}.")
    if len(rows) != n_rows:
        raise DataError(f"exclude must contain 1 entry for every query: got {len(rows)} for {n_rows} queries.")
    arrays = []
    for r, items in enumerate(rows):
        a = np.asarray(items if items is not None else [], dtype=None).reshape(-1)
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"exclude[{r}] must hold integer item ids, got dtype {a.dtype}.")
        arrays.append(a.astype(np.int64))
    lengths = np.fromiter((a.size for a in arrays), np.int64, n_rows)
    cols = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= n_items):
        raise DataError(f"exclude holds item id {cols.min() if cols.min() < 0 else cols.max()}; item ids are "
                        f"0..{n_items - 1}.")
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    X = sp.csr_matrix((np.ones(cols.size, np.float32), cols, indptr), shape=(n_rows, n_items))
    X.sum_duplicates()
    return X


def check_filter_items(filter_items, n_items: int) -> np.ndarray | None:
    """Items never to return, as a sorted unique int64 array (None when empty)."""
    if filter_items is None:
        return None
    arr = np.asarray(filter_items).reshape(-1) if not isinstance(filter_items, numbers.Integral) else np.array([filter_items])
    if arr.size == 0:
        return None
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"filter_items must hold integer item ids, got dtype {arr.dtype}.")
    arr = np.unique(arr.astype(np.int64))
    if arr[0] < 0 or arr[-1] >= n_items:
        raise DataError(f"filter_items holds item id {arr[0] if arr[0] < 0 else arr[-1]}; item ids are 0..{n_items - 1}.")
    return arr


def check_ids_space(ids: str) -> str:
    if ids not in ("internal", "external"):
        raise ValueError(f"ids == {ids!r}, must be 'internal' or 'external'.")
    return ids
