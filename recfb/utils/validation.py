"""Validation at the public boundary: messages name the value and what was expected."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from recfb.utils.errors import DataError, InvalidParameterError, NotFittedError, UnknownIdError

#: the working-set size of every blocked computation (scores of a block of users x all items,
#: evaluation batches, the simulator's policy calls): one constant, so memory is predictable
BLOCK_BYTES = 64 * 2**20


def rows_per_block(bytes_per_row: int) -> int:
    """How many rows of ``bytes_per_row`` fit in :data:`BLOCK_BYTES` (at least 1)."""
    return max(1, BLOCK_BYTES // max(int(bytes_per_row), 1))


def _caller_level() -> int:
    """``stacklevel`` that points a warning at the first frame outside recfb (the caller's
    line), however deep inside recfb the check ran."""
    import os
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def check_random_state(seed) -> np.random.Generator:
    """Turn ``seed`` (None, int, Generator) into a ``numpy.random.Generator``.

    Never touches numpy's global RNG, so results do not depend on what ran before.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (numbers.Integral, np.integer)):
        if seed is not None and seed < 0:
            raise ValueError(f"random_state == {seed}, must be None or an int >= 0.")
        return np.random.default_rng(seed)
    raise TypeError(f"random_state must be None, an int or a numpy Generator, got {type(seed).__name__}.")


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as int; InvalidParameterError (a TypeError and a ValueError) unless it is
    an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidParameterError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise InvalidParameterError(f"{name} == {value}, must be >= {minimum}.")
    return int(value)


def check_number(value, name: str, *, minimum: float = 0.0, strict: bool = False, allow_none: bool = False):
    """Return ``value`` as float; InvalidParameterError unless it is a finite real number
    ``>= minimum`` (``> minimum`` when ``strict``), or None when ``allow_none`` (a setting
    derived at fit time)."""
    if value is None and allow_none:
        return None
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
          and (value > minimum if strict else value >= minimum))
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum:g}"
        prefix = "None (derived) or " if allow_none else ""
        raise InvalidParameterError(f"{name} == {value!r}, must be {prefix}a finite number {bound}.")
    return float(value)


def check_csr(X, name: str = "user_items", *, n_items: int | None = None,
              n_rows: int | None = None, allow_empty: bool = True, weights=None):
    """Validate a users x items interaction matrix and return it as canonical CSR float32.

    Every matrix that enters recfb (fit, recommend, score, evaluation, serving, loaded user
    rows) passes here. In O(nnz), vectorised:

    - structure: ``indptr`` consistent and non-decreasing, every column index in
      ``[0, n_cols)`` (negative or out-of-range indices raise DataError; scipy's compiled
      routines would read out of bounds or wrap them);
    - indices unsorted within a row are sorted (warning);
    - duplicate (row, column) entries are summed, as scipy does (warning saying how many);
    - NaN/inf or negative weights raise DataError;
    - stored zeros are not interactions: they are eliminated (warning saying how many).

    Cheap conversions (COO/CSC -> CSR, other dtypes -> float32) warn once; dense arrays and
    wrong shapes raise. The input is never modified.

    ``weights`` (optional, one per stored entry of the CSR input, e.g. ``sample_weight``)
    are permuted and filtered along with the entries; ``(X, weights)`` is returned then.
    Duplicate entries with weights raise (their weights cannot be combined unambiguously).
    """
    if not sp.issparse(X):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix (users x items, CSR), got {type(X).__name__}. "
            "Build one with recfb.data.Interactions(...).matrix or scipy.sparse.csr_matrix."
        )
    if X.ndim != 2:
        raise DataError(f"{name} must be 2-D (users x items), got shape {X.shape}.")
    check_sparse_structure(X, name)
    if weights is not None and X.format != "csr":
        raise DataError(f"{name} must be CSR when per-entry weights are given (they follow its entry order), "
                        f"got {X.format.upper()}.")
    if X.format != "csr":
        warnings.warn(f"{name} was converted from {X.format.upper()} to CSR.", stacklevel=_caller_level())
        X = X.tocsr()
    X = sp.csr_matrix(X) if isinstance(X, sp.csr_array) else X
    if weights is not None:
        weights = np.asarray(weights, np.float32).reshape(-1)
        if weights.size != X.nnz:
            raise DataError(f"sample_weight has {weights.size} entries, expected one per stored entry of "
                            f"{name} ({X.nnz}).")
    owned = False  # whether X is already a private copy
    if X.dtype != np.float32:
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"{name} has dtype {X.dtype}, expected a numeric dtype.")
        if np.issubdtype(X.dtype, np.complexfloating):
            raise DataError(f"{name} has dtype {X.dtype}; weights must be real numbers.")
        if X.dtype != np.float64 and X.dtype != bool:
            warnings.warn(f"{name} was converted from {X.dtype} to float32.", stacklevel=_caller_level())
        data64 = np.asarray(X.data, np.float64) if X.dtype.kind == "f" else None
        X = X.astype(np.float32)
        owned = True
        if data64 is not None and data64.size:  # 1e300 in float64 must not pass as a finite inf-free value
            over = np.isfinite(data64) & ~np.isfinite(X.data)
            if over.any():
                raise DataError(f"{name} holds the weight {data64[over][0]!r}, which overflows float32; "
                                "weights must be finite float32 numbers.")
    data = X.data
    if data.size:
        finite = np.isfinite(data)
        if not finite.all():
            at = int(np.argmin(finite))
            raise DataError(f"{name} contains a non-finite weight ({data[at]}) at stored entry {at}; "
                            "weights must be finite.")
        if data.min() < 0:
            raise DataError(f"{name} contains a negative weight ({data.min()}); weights must be >= 0.")
    is_sorted, has_dups = _within_row_steps(X)
    if not is_sorted:
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        order = np.lexsort((X.indices, rows))
        X = sp.csr_matrix((X.data[order], X.indices[order], X.indptr.copy()), shape=X.shape)
        owned = True
        if weights is not None:
            weights = weights[order]
        warnings.warn(f"{name} had unsorted column indices within rows; they were sorted.", stacklevel=_caller_level())
        _, has_dups = _within_row_steps(X)
    X.has_sorted_indices = True
    if has_dups:
        if weights is not None:
            raise DataError(f"{name} has duplicate (row, column) entries; with per-entry weights they cannot be "
                            "combined. Sum duplicates (X.sum_duplicates()) and combine their weights first.")
        if not owned:
            X = X.copy()
            owned = True
        before = X.nnz
        X.sum_duplicates()
        warnings.warn(f"{name} had {before - X.nnz} duplicate (row, column) entries; they were summed "
                      "(scipy's rule).", stacklevel=_caller_level())
    zeros = X.data == 0
    n_zero = int(zeros.sum())
    if n_zero and n_zero == X.nnz and not allow_empty:
        raise DataError(f"{name} has {n_zero} stored entries but all are zero; a stored zero is not an "
                        "interaction, so there is nothing to learn from.")
    if n_zero:
        keep = ~zeros
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        counts = np.bincount(rows[keep], minlength=X.shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(X.indptr.dtype)
        X = sp.csr_matrix((X.data[keep], X.indices[keep], indptr), shape=X.shape)
        X.has_sorted_indices = True
        if weights is not None:
            weights = weights[keep]
        warnings.warn(f"{name} had {n_zero} stored zero(s); a stored zero is not an interaction, "
                      "they were removed.", stacklevel=_caller_level())
    if n_items is not None and X.shape[1] != n_items:
        raise DataError(
            f"{name} has {X.shape[1]} columns but the model was fitted on {n_items} items; "
            "is the matrix transposed (expected users x items)?"
        )
    if n_rows is not None and X.shape[0] != n_rows:
        raise DataError(f"{name} must contain 1 row for every user in userids: got {X.shape[0]} rows for {n_rows} users.")
    if not allow_empty and (X.shape[0] == 0 or X.shape[1] == 0 or X.nnz == 0):
        raise DataError(f"{name} is empty (shape {X.shape}, {X.nnz} interactions after removing stored zeros); "
                        "nothing to learn from.")
    return X if weights is None else (X, weights)


def check_sparse_structure(X, name: str = "user_items") -> None:
    """Raise DataError unless the index arrays of a CSR, CSC or COO matrix lie inside its
    shape and are consistent (O(nnz)). Call it before any scipy routine touches a matrix a
    caller built by hand: compiled code does not check, and crashes or wraps negatives."""
    if X.format in ("csr", "csc"):
        _compressed_structure(X, name)
    elif X.format == "coo":
        _coo_structure(X, name)


def _coo_structure(X, name: str) -> None:
    """Row and column indices of a COO matrix inside its shape (a mutated COO is not rechecked
    by scipy)."""
    for arr, dim, what in ((X.row, X.shape[0], "row"), (X.col, X.shape[1], "column")):
        arr = np.asarray(arr)
        if arr.size and (arr.min() < 0 or arr.max() >= dim):
            bad = arr.min() if arr.min() < 0 else arr.max()
            raise DataError(f"{name} holds {what} index {bad} outside 0..{dim - 1} for shape {X.shape}.")
    if np.asarray(X.data).size != np.asarray(X.row).size or np.asarray(X.col).size != np.asarray(X.row).size:
        raise DataError(f"{name}: COO data, row and col have different lengths.")


def _compressed_structure(X, name: str) -> None:
    """Raise DataError unless the index arrays of a CSR/CSC matrix are consistent: ``indptr``
    of length major + 1, starting at 0, non-decreasing, ending at ``len(indices) ==
    len(data)``, and every minor index in ``[0, minor)``. O(nnz), vectorised. Must run before
    any scipy routine touches the arrays: out-of-range indices crash compiled code."""
    major, minor = X.shape if X.format == "csr" else X.shape[::-1]
    what = ("row", "column") if X.format == "csr" else ("column", "row")
    indptr, indices, data = np.asarray(X.indptr), np.asarray(X.indices), np.asarray(X.data)
    if indptr.ndim != 1 or indptr.dtype.kind not in "iu" or indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise DataError(f"{name} has malformed index arrays (indptr {indptr.dtype}{indptr.shape}, "
                        f"indices {indices.dtype}{indices.shape}); expected 1-D integer arrays.")
    if indptr.size != major + 1:
        raise DataError(f"{name}: indptr has {indptr.size} entries, expected {major + 1} "
                        f"(one per {what[0]} + 1) for shape {X.shape}.")
    if data.ndim != 1 or data.size != indices.size:
        raise DataError(f"{name}: data has {data.size} entries but indices has {indices.size}; they must match.")
    if indptr[0] != 0 or indptr[-1] != indices.size:
        raise DataError(f"{name}: indptr runs from {indptr[0]} to {indptr[-1]}, expected 0 to nnz = {indices.size}.")
    steps = np.diff(indptr)
    if steps.size and steps.min() < 0:
        at = int(np.argmax(steps < 0))
        raise DataError(f"{name}: indptr decreases at {what[0]} {at} ({indptr[at]} -> {indptr[at + 1]}); "
                        "it must be non-decreasing.")
    if indices.size:
        lo, hi = indices.min(), indices.max()
        if lo < 0 or hi >= minor:
            bad = int(lo) if lo < 0 else int(hi)
            at = int(np.argmax(indices == bad))
            raise DataError(f"{name} holds {what[1]} index {bad} (stored entry {at}) outside 0..{minor - 1} "
                            f"for shape {X.shape}; the matrix is corrupt.")


def _within_row_steps(X):
    """(sorted, has_duplicates) of a CSR whose structure is valid: compares each stored index
    with the previous one in the same row."""
    indices = X.indices
    if indices.size < 2:
        return True, False
    step = np.diff(indices.astype(np.int64))
    same_row = np.ones(indices.size, bool)
    starts = X.indptr[1:-1]
    same_row[starts[starts < indices.size]] = False
    same_row = same_row[1:]
    return not bool(np.any((step < 0) & same_row)), bool(np.any((step == 0) & same_row))


def check_userids(userids, n_users: int | None = None, name: str = "userids"):
    """Return (ids as 1-D int64 array, whether the input was a scalar)."""
    scalar = np.isscalar(userids) or (isinstance(userids, np.ndarray) and userids.ndim == 0)
    arr = np.asarray(userids)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if (np.issubdtype(arr.dtype, np.floating) and arr.size and np.all(np.isfinite(arr))
                and np.all(arr == np.round(arr)) and np.abs(arr).max() < 2**63):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integers (internal ids), got dtype {arr.dtype}.")
    arr = np.atleast_1d(arr).astype(np.int64, copy=False)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a scalar or 1-D, got shape {arr.shape}.")
    if arr.size and arr.min() < 0:
        raise UnknownIdError(f"{name} contains a negative id ({arr.min()}); internal ids are >= 0.")
    if n_users is not None and arr.size and arr.max() >= n_users:
        raise UnknownIdError(f"{name} contains id {arr.max()} but there are only {n_users} ids (0..{n_users - 1}).")
    return arr, scalar


def check_is_fitted(model, attributes=None) -> None:
    """Raise NotFittedError if ``model`` lacks the fitted attributes (names ending in ``_``)."""
    if attributes is None:
        fitted = [k for k in vars(model) if k.endswith("_") and not k.startswith("__")]
        ok = bool(fitted)
    else:
        attributes = [attributes] if isinstance(attributes, str) else attributes
        ok = all(getattr(model, a, None) is not None for a in attributes)
    if not ok:
        raise NotFittedError(
            f"This {type(model).__name__} instance is not fitted yet; call fit(user_items) first."
        )


def check_propensity(propensity, name: str = "propensity") -> np.ndarray:
    """``propensity`` (array-like or torch tensor) as a float64 array with every value in (0, 1];
    DataError naming the first bad value and its index (the one check of recfb.debias and
    recfb.losses)."""
    if hasattr(propensity, "detach"):  # a torch tensor
        propensity = propensity.detach().cpu().numpy()
    try:
        p = np.asarray(propensity, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers in (0, 1], got {type(propensity).__name__}.") from None
    if p.size == 0:
        return p
    bad = ~np.isfinite(p)
    if bad.any():
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), p.shape)
        raise DataError(f"{name} holds {p[idx]} at index {tuple(int(i) for i in idx)}; propensities must be "
                        "finite numbers in (0, 1].")
    bad = (p <= 0) | (p > 1)
    if bad.any():
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), p.shape)
        raise DataError(f"{name} == {p[idx]} at index {tuple(int(i) for i in idx)}, must be in (0, 1] "
                        f"({int(bad.sum())} values outside; min {p.min()}, max {p.max()}). A propensity of 0 "
                        "means the item is never shown; clip it or drop the item.")
    return p


def check_clip(clip, name: str = "clip"):
    """``clip`` as None or a float in (0, 1]."""
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (numbers.Real, np.floating)) or not (0 < clip <= 1):
        raise ValueError(f"{name} == {clip!r}, must be None or a number in (0, 1].")
    return float(clip)
