"""The users a service answers for: external ids, query vectors and seen items."""
from __future__ import annotations

import numpy as np

from recfb.utils.errors import DataError
from recfb.utils.validation import check_csr


class UnknownUserError(DataError, KeyError):
    """A requested user is not in the index's user table (a service answers 404)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UserTable:
    """Per-user data bundled with an index.

    Parameters
    ----------
    user_items : sparse (n_users, n_items), optional
        Each user's seen items: excluded from their recommendations, and the query of an
        item-item index.
    user_vectors : ndarray (n_users, dim) float32, optional
        Each user's query vector (embedding indices).
    user_ids : array (n_users,), optional
        External user ids (integers or strings); without them users are addressed by
        internal id.
    """

    def __init__(self, *, user_items=None, user_vectors=None, user_ids=None, n_items: int, dim=None,
                 need_vectors: bool = False):
        sizes = {}
        self.user_items = None
        if user_items is not None:
            self.user_items = check_csr(user_items, "user_items", n_items=n_items)
            sizes["user_items"] = self.user_items.shape[0]
        self.user_vectors = None
        if user_vectors is not None:
            vec = np.asarray(user_vectors)
            if vec.ndim != 2 or (dim is not None and vec.shape[1] != dim):
                raise DataError(f"user_vectors must be (n_users, {dim}), got shape {vec.shape}.")
            if not np.isfinite(vec).all():
                raise DataError("user_vectors contain NaN or inf.")
            self.user_vectors = np.ascontiguousarray(vec, dtype=np.float32)
            sizes["user_vectors"] = vec.shape[0]
        if need_vectors and self.user_vectors is None:
            raise DataError("an embedding index needs user_vectors (e.g. model.user_factors) to answer for users.")
        if not need_vectors and self.user_items is None:
            raise DataError("an item-item index needs user_items: the histories are its queries.")
        self.user_map = None
        if user_ids is not None:
            from recfb.data.idmap import IdMap
            self.user_map = IdMap(user_ids, "user_ids")
            sizes["user_ids"] = len(self.user_map)
        if len(set(sizes.values())) > 1:
            raise DataError(f"user tables disagree on the number of users: {sizes}.")
        self.n_users = next(iter(sizes.values()))

    @property
    def user_ids(self):
        return None if self.user_map is None else self.user_map.ids

    def lookup(self, users) -> np.ndarray:
        """Internal rows of ``users`` (external ids, or internal ids without a user map)."""
        arr = np.atleast_1d(np.asarray(users))
        if self.user_map is None:
            if arr.dtype.kind not in "iu":
                arr = _integer_ids(arr, "user ids must be internal integer ids here")
            bad = (arr < 0) | (arr >= self.n_users)
            if bad.any():
                raise UnknownUserError(f"unknown user {arr[bad][0]!r}: internal ids are 0..{self.n_users - 1}.")
            return arr.astype(np.int64)
        ids = self.user_map.ids
        if ids.dtype.kind in "iu" and arr.dtype.kind not in "iu":
            arr = _integer_ids(arr, "this index's user ids are integers")
        elif arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise UnknownUserError(f"unknown user {arr.max()!r}: user ids fit int64.")
        elif ids.dtype.kind in "US":
            arr = arr.astype(str)
        rows = self.user_map.to_internal(arr, missing="ignore")
        if (rows < 0).any():
            raise UnknownUserError(f"unknown user {arr[rows < 0][0]!r}.")
        return rows.astype(np.int64)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.user_vectors[rows]

    def history(self, rows: np.ndarray):
        return self.user_items[rows]


def _integer_ids(arr: np.ndarray, expected: str) -> np.ndarray:
    """Requested ids (strings like "42", Python ints of any size, integral floats) as int64;
    anything else, or a value outside int64 (``10**30``), is an UnknownUserError (a 4xx, never
    an OverflowError). A loop over the few ids of one request, not over interactions."""
    out = np.empty(arr.size, np.int64)
    for j, u in enumerate(arr.tolist()):
        try:
            if isinstance(u, (bool, np.bool_)):
                raise ValueError
            v = int(u) if not isinstance(u, float) or u.is_integer() else None
            if v is None:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise UnknownUserError(f"unknown user {u!r}: {expected}.") from None
        if not -2**63 <= v < 2**63:
            raise UnknownUserError(f"unknown user {u!r}: {expected}, and this one is outside the int64 range.")
        out[j] = v
    return out
