"""Two-way maps between external ids (ints or strings) and contiguous internal ids."""
from __future__ import annotations

import numpy as np

from recfb.utils.errors import DataError


def _as_id_array(values, name: str) -> np.ndarray:
    """Validate external ids: integers >= 0 or strings; integral floats are converted."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype == object:
        arr = _object_ids(arr, name)
    if arr.dtype.kind in "US":
        if arr.size and np.any(arr == ""):
            raise DataError(f"{name} contains an empty string id at row {int(np.argmax(arr == ''))}.")
        return arr
    if arr.dtype == bool:
        raise DataError(f"{name} has dtype bool; expected integer or string ids.")
    if arr.dtype.kind == "u" and arr.size and arr.max() > _INT64_MAX:
        row = int(np.argmax(arr > _INT64_MAX))
        raise DataError(f"{name} contains the id {arr[row]} at row {row}, which is >= 2**63; integer ids must fit "
                        "int64 (pass larger ids as strings).")
    if arr.dtype.kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            row = int(np.argmax(~np.isfinite(arr)))
            raise DataError(f"{name} contains a non-finite id ({arr[row]}) at row {row}; ids must be integers or strings.")
        frac = arr != np.floor(arr)
        if np.any(frac):
            row = int(np.argmax(frac))
            raise DataError(f"{name} contains a non-integer id ({arr[row]}) at row {row}; ids must be integers or strings.")
        if arr.size and np.abs(arr).max() >= 2.0**63:
            row = int(np.argmax(np.abs(arr) >= 2.0**63))
            raise DataError(f"{name} contains the id {arr[row]} at row {row}, outside the int64 range; integer ids "
                            "must fit int64 (pass larger ids as strings).")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise DataError(f"{name} has dtype {arr.dtype}; expected integer or string ids.")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        row = int(np.argmin(arr))
        raise DataError(f"{name} contains a negative id ({arr[row]}) at row {row}; ids must be >= 0.")
    return arr


_INT64_MAX = np.iinfo(np.int64).max
# kinds of the elements of an object id array
_STR, _INT, _FLOAT, _OTHER = 0, 1, 2, 3


def _element_kind(v) -> int:
    if isinstance(v, str):
        return _STR
    if isinstance(v, (bool, np.bool_)):
        return _OTHER
    if isinstance(v, (int, np.integer)):
        return _INT
    if isinstance(v, (float, np.floating)):
        return _FLOAT
    return _OTHER


_element_kinds = np.frompyfunc(_element_kind, 1, 1)


def _object_ids(arr: np.ndarray, name: str) -> np.ndarray:
    """Every row of an object array checked (one C-level pass): all strings -> str array; all
    integers (integral floats allowed) within int64 -> int64; anything else (None, 2.7, '7'
    among integers, bool, bytes, ids >= 2**63) raises naming the row and the value."""
    if arr.size == 0:
        return arr.astype(np.int64)
    kinds = _element_kinds(arr).astype(np.int8)
    other = kinds == _OTHER
    if other.any():
        row = int(np.argmax(other))
        raise DataError(f"{name} contains {arr[row]!r} ({type(arr[row]).__name__}) at row {row}; "
                        "ids must be integers or strings.")
    is_str = kinds == _STR
    if is_str.all():
        return arr.astype(str)
    if is_str.any():
        row = int(np.argmax(is_str != is_str[0]))
        raise DataError(f"{name} mixes strings and numbers: {arr[0]!r} at row 0 but {arr[row]!r} at row {row}; "
                        "ids must be all integers or all strings.")
    floats = kinds == _FLOAT
    if floats.any():
        f = arr[floats].astype(np.float64)
        bad = ~np.isfinite(f) | (f != np.floor(f))
        if bad.any():
            row = int(np.flatnonzero(floats)[np.argmax(bad)])
            raise DataError(f"{name} contains a non-integer id ({arr[row]!r}) at row {row}; ids must be integers "
                            "or strings.")
    out_of_range = (arr > _INT64_MAX) | (arr < 0)
    if out_of_range.any():
        row = int(np.argmax(out_of_range))
        what = "negative" if arr[row] < 0 else ">= 2**63 (integer ids must fit int64; pass larger ids as strings)"
        raise DataError(f"{name} contains the id {arr[row]!r} at row {row}, which is {what}; ids must be >= 0.")
    return np.frompyfunc(int, 1, 1)(arr).astype(np.int64) if floats.any() else arr.astype(np.int64)


class IdMap:
    """External id <-> internal id (0..n-1). ``ids[internal]`` is the external id.

    Lookups are vectorised with a sorted view, so mapping millions of ids costs one
    ``searchsorted``.
    """

    def __init__(self, ids, name: str = "ids"):
        ids = _as_id_array(ids, name)
        self.name = name
        self.ids = ids
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        if ids.size > 1 and np.any(self._sorted[1:] == self._sorted[:-1]):
            dup = self._sorted[1:][self._sorted[1:] == self._sorted[:-1]][0]
            raise DataError(f"{name} contains the id {dup!r} twice; an id map must be one-to-one.")

    @classmethod
    def from_values(cls, values, name: str = "ids") -> tuple["IdMap", np.ndarray]:
        """Build the map from raw (repeated) values; return it and the internal codes."""
        arr = _as_id_array(values, name)
        uniq, codes = np.unique(arr, return_inverse=True)
        return cls(uniq, name), codes.astype(np.int64).reshape(-1)

    def __len__(self) -> int:
        return int(self.ids.size)

    def __eq__(self, other) -> bool:
        return isinstance(other, IdMap) and len(self) == len(other) and bool(np.all(self.ids == other.ids))

    def to_internal(self, external, missing: str = "raise") -> np.ndarray:
        """Internal ids of ``external``; unknown ids raise KeyError (or give -1 with missing='ignore')."""
        ext = np.asarray(external)
        scalar = ext.ndim == 0
        ext = np.atleast_1d(ext)
        if self.ids.dtype.kind in "US":
            ext = ext.astype(str)
        elif ext.dtype.kind not in "iu":
            ext = _as_id_array(ext, self.name)
        pos = np.searchsorted(self._sorted, ext)
        pos_c = np.minimum(pos, max(len(self) - 1, 0))
        found = (pos < len(self)) & (self._sorted[pos_c] == ext) if len(self) else np.zeros(ext.shape, bool)
        out = np.where(found, self._order[pos_c] if len(self) else -1, -1).astype(np.int64)
        if missing == "raise" and not np.all(found):
            unknown = ext[~found]
            raise KeyError(f"unknown {self.name}: {unknown[:5].tolist()}{' ...' if unknown.size > 5 else ''} "
                           f"({unknown.size} not seen in the data)")
        return out[0] if scalar else out

    def to_external(self, internal) -> np.ndarray:
        internal = np.asarray(internal)
        if internal.size and (internal.min() < 0 or internal.max() >= len(self)):
            raise KeyError(f"internal {self.name} out of range 0..{len(self) - 1}: {internal.min()}..{internal.max()}")
        return self.ids[internal]
