"""Validation at the public boundary: messages name the value and what was expected."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from recfb.utils.errors import DataError, NotFittedError


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
    """Return ``value`` as int, raising if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} == {value}, must be >= {minimum}.")
    return int(value)


def check_number(value, name: str, *, minimum: float = 0.0, strict: bool = False, allow_none: bool = False):
    """Return ``value`` as float, raising ValueError unless it is a finite real number
    ``>= minimum`` (``> minimum`` when ``strict``), or None when ``allow_none`` (a setting
    derived at fit time)."""
    if value is None and allow_none:
        return None
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
          and (value > minimum if strict else value >= minimum))
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum:g}"
        prefix = "None (derived) or " if allow_none else ""
        raise ValueError(f"{name} == {value!r}, must be {prefix}a finite number {bound}.")
    return float(value)


def check_csr(X, name: str = "user_items", *, n_items: int | None = None,
              n_rows: int | None = None, allow_empty: bool = True) -> sp.csr_matrix:
    """Validate a users x items interaction matrix and return it as CSR float32.

    Cheap conversions (COO/CSC -> CSR, other dtypes -> float32) warn once; dense arrays,
    NaN/inf or negative weights and wrong shapes raise with the offending value named.
    """
    if not sp.issparse(X):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix (users x items, CSR), got {type(X).__name__}. "
            "Build one with recfb.data.Interactions(...).matrix or scipy.sparse.csr_matrix."
        )
    if X.ndim != 2:
        raise DataError(f"{name} must be 2-D (users x items), got shape {X.shape}.")
    if not (sp.isspmatrix_csr(X) or isinstance(X, sp.csr_array)):
        warnings.warn(f"{name} was converted from {X.format.upper()} to CSR.", stacklevel=3)
        X = X.tocsr()
    if isinstance(X, sp.csr_array):
        X = sp.csr_matrix(X)
    if X.dtype != np.float32:
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"{name} has dtype {X.dtype}, expected a numeric dtype.")
        if X.dtype != np.float64 and X.dtype != bool:
            warnings.warn(f"{name} was converted from {X.dtype} to float32.", stacklevel=3)
        X = X.astype(np.float32)
    data = X.data
    if data.size:
        if not np.all(np.isfinite(data)):
            bad = data[~np.isfinite(data)][0]
            raise DataError(f"{name} contains a non-finite weight ({bad}); weights must be finite.")
        if data.min() < 0:
            raise DataError(f"{name} contains a negative weight ({data.min()}); weights must be >= 0.")
    if n_items is not None and X.shape[1] != n_items:
        raise DataError(
            f"{name} has {X.shape[1]} columns but the model was fitted on {n_items} items; "
            "is the matrix transposed (expected users x items)?"
        )
    if n_rows is not None and X.shape[0] != n_rows:
        raise DataError(f"{name} must contain 1 row for every user in userids: got {X.shape[0]} rows for {n_rows} users.")
    if not allow_empty and (X.shape[0] == 0 or X.shape[1] == 0 or X.nnz == 0):
        raise DataError(f"{name} is empty (shape {X.shape}, {X.nnz} interactions); nothing to learn from.")
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    return X


def check_userids(userids, n_users: int | None = None, name: str = "userids"):
    """Return (ids as 1-D int64 array, whether the input was a scalar)."""
    scalar = np.isscalar(userids) or (isinstance(userids, np.ndarray) and userids.ndim == 0)
    arr = np.asarray(userids)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and arr.size and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integers (internal ids), got dtype {arr.dtype}.")
    arr = np.atleast_1d(arr).astype(np.int64, copy=False)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a scalar or 1-D, got shape {arr.shape}.")
    if arr.size and arr.min() < 0:
        raise DataError(f"{name} contains a negative id ({arr.min()}); internal ids are >= 0.")
    if n_users is not None and arr.size and arr.max() >= n_users:
        raise DataError(f"{name} contains id {arr.max()} but there are only {n_users} ids (0..{n_users - 1}).")
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
