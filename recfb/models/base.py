"""The Recommender contract shared by every recfb model (implicit-compatible inference,
scikit-learn style parameters, pickle-free persistence).

A model implements ``fit`` and ``_score`` (dense scores for a block of users); everything a
user calls at inference (``recommend``, ``score``, ``similar_items``) and persistence
(``save``/``recfb.load``) is here, once.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recfb._version import __version__
from recfb.utils.errors import DataError, FormatError
from recfb.utils.validation import check_csr, check_is_fitted, check_positive_int, check_userids

FORMAT = "recfb-model"
FORMAT_VERSION = 1
_METADATA_KEY = "__metadata__"
# Scores of one block of users stay under this many bytes (users x items float32).
_BLOCK_BYTES = 64 * 2**20

_REGISTRY: dict[str, type] = {}


@dataclass(frozen=True)
class ScoreCall:
    """Options of one inference call, handed down as an argument and never kept on the model,
    so that two threads calling at once cannot see each other's mode.

    recalculate : fold users in from their rows (``recommend(..., recalculate_user=True)``).
    histories : packed ``(indptr, items)`` histories given with the call, one per user
        (sequential models' ``recommend(..., histories=...)``).
    offset : position of the current block's first user within the call.
    """
    recalculate: bool = False
    histories: tuple | None = None
    offset: int = 0


class Recommender:
    """Base class: stores parameters, validates input, recommends, saves and loads.

    Subclasses set fitted attributes ending in ``_`` (``n_users_``, ``n_items_`` always) and
    implement:

    - ``fit(user_items) -> self``
    - ``_score(userids, user_items) -> ndarray (len(userids), n_items) float32``
    - ``_get_state() -> dict[str, ndarray]`` and ``_set_state(arrays)`` for persistence
    - optionally ``_similar_scores(itemids)`` for ``similar_items``.
    """

    #: True when scores come from per-user parameters learnt at fit (users unseen at fit
    #: can then not be scored from their row alone).
    needs_fitted_users = False
    #: True when ``recommend(..., recalculate_user=True)`` folds users in from their rows
    #: (``_score_call`` then gets a :class:`ScoreCall` with ``recalculate=True``).
    supports_fold_in = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters, as in scikit-learn."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "Recommender":
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid parameters: {valid}.")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        def is_default(k, v):
            default = sig.parameters[k].default
            try:
                return default is not inspect.Parameter.empty and bool(default == v)
            except (TypeError, ValueError):  # arrays and other values without a plain ==
                return False
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not is_default(k, v)]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ------------------------------------------------------------------ fitting helpers
    def _validate_fit_input(self, user_items) -> sp.csr_matrix:
        X = check_csr(user_items, "user_items", allow_empty=False)
        self.n_users_, self.n_items_ = X.shape
        return X

    def fit(self, user_items, show_progress: bool = True):  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _score_call(self, userids: np.ndarray, user_items: sp.csr_matrix, call: ScoreCall) -> np.ndarray:
        """Scores of one block under the options of its call; models with per-call modes
        (fold-in, given histories) override this, the others only define ``_score``."""
        return self._score(userids, user_items)

    def _check_users_known(self, userids: np.ndarray, call: ScoreCall = ScoreCall()) -> None:
        if call.recalculate or call.histories is not None:
            return
        if self.needs_fitted_users and userids.size and userids.max() >= self.n_users_:
            raise DataError(f"userid {int(userids.max())} was not seen at fit ({self.n_users_} users, ids "
                            f"0..{self.n_users_ - 1}); {type(self).__name__} has no factors for it.")

    # ------------------------------------------------------------------ inference
    def _prepare(self, userids, user_items, call: ScoreCall = ScoreCall()):
        check_is_fitted(self, "n_items_")
        ids, scalar = check_userids(userids, name="userid" if np.isscalar(userids) else "userids")
        X = check_csr(user_items, "user_items", n_items=self.n_items_, n_rows=ids.size)
        self._check_users_known(ids, call)
        return ids, scalar, X

    def score(self, userids, user_items, items=None) -> np.ndarray:
        """Raw scores, higher is better.

        ``items=None`` gives all items (len(userids) x n_items); a 1-D ``items`` gives those
        columns; a 2-D ``items`` (one row of item ids per user) gives per-user candidates.
        Already-liked items are not filtered here.
        """
        ids, scalar, X = self._prepare(userids, user_items)
        items_arr = None if items is None else np.asarray(items, dtype=np.int64)
        if items_arr is not None:
            if items_arr.size and (items_arr.min() < 0 or items_arr.max() >= self.n_items_):
                raise DataError(f"items must be item ids in 0..{self.n_items_ - 1}, got "
                                f"{items_arr.min()}..{items_arr.max()}.")
            if items_arr.ndim == 2 and items_arr.shape[0] != ids.size:
                raise DataError(f"a 2-D items needs one row per user: {items_arr.shape[0]} rows for {ids.size} users.")
        out = []
        for start, stop in _blocks(ids.size, self.n_items_):
            s = self._score(ids[start:stop], X[start:stop])
            if items_arr is not None:
                s = s[:, items_arr] if items_arr.ndim == 1 else np.take_along_axis(s, items_arr[start:stop], axis=1)
            out.append(s.astype(np.float32, copy=False))
        result = np.concatenate(out) if out else np.empty((0, self.n_items_), np.float32)
        return result[0] if scalar else result

    def recommend(self, userid, user_items, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items=None, recalculate_user: bool = False, items=None):
        """Top-``N`` items for ``userid`` (an int or an array of ints), as implicit does.

        Parameters
        ----------
        userid : int or array of int
            Internal user ids.
        user_items : csr_matrix
            One row per user in ``userid`` (their interactions), used for filtering and by
            models that score from the history.
        N : int
            Number of items; at most the number of candidate items.
        filter_already_liked_items : bool
            Drop items present in ``user_items``.
        filter_items : array of int, optional
            Items never to recommend.
        recalculate_user : bool
            Accepted for compatibility with implicit; models that fold users in do so.
        items : array of int, optional
            Rank only these items.

        Returns
        -------
        ids : int32 array, (N,) for one user or (len(userid), N)
        scores : float32 array, same shape
            When a user has fewer than ``N`` eligible items, a 2-D result pads the row with
            id ``-1`` and score ``-inf``; a 1-D result is shortened instead.
        """
        N = check_positive_int(N, "N")
        call = ScoreCall(recalculate=bool(recalculate_user) and self.supports_fold_in)
        return self._recommend(userid, user_items, N, filter_already_liked_items, filter_items, items, call)

    def _recommend(self, userid, user_items, N, filter_already_liked_items, filter_items, items,
                   call: ScoreCall = ScoreCall()):
        ids, scalar, X = self._prepare(userid, user_items, call)
        n_items = self.n_items_
        candidates = None if items is None else _check_item_list(items, n_items, "items")
        banned = None if filter_items is None else _check_item_list(filter_items, n_items, "filter_items")
        n_cand = n_items if candidates is None else candidates.size
        if banned is not None:
            n_cand -= int(np.isin(candidates, banned).sum()) if candidates is not None else np.unique(banned).size
        k = max(0, min(N, n_cand))
        all_ids = np.full((ids.size, k), -1, np.int32)
        all_scores = np.full((ids.size, k), -np.inf, np.float32)
        for start, stop in _blocks(ids.size, n_items):
            s = np.array(self._score_call(ids[start:stop], X[start:stop], replace(call, offset=start)),
                         dtype=np.float32, copy=True)
            rows = X[start:stop]
            if filter_already_liked_items and rows.nnz:
                r = np.repeat(np.arange(stop - start), np.diff(rows.indptr))
                s[r, rows.indices] = -np.inf
            if banned is not None:
                s[:, banned] = -np.inf
            if candidates is not None:
                sub = s[:, candidates]
                top, vals = topk(sub, k)
                top = np.where(top >= 0, candidates[np.maximum(top, 0)], -1)
            else:
                top, vals = topk(s, k)
            all_ids[start:stop], all_scores[start:stop] = top, vals
        if scalar:
            keep = all_ids[0] >= 0
            return all_ids[0][keep], all_scores[0][keep]
        return all_ids, all_scores

    def similar_items(self, itemid, N: int = 10, filter_items=None, items=None):
        """Items most similar to ``itemid`` (int or array), the item itself usually first."""
        check_is_fitted(self, "n_items_")
        N = check_positive_int(N, "N")
        ids, scalar = check_userids(itemid, self.n_items_, name="itemid")
        candidates = None if items is None else _check_item_list(items, self.n_items_, "items")
        banned = None if filter_items is None else _check_item_list(filter_items, self.n_items_, "filter_items")
        s = np.array(self._similar_scores(ids), dtype=np.float32, copy=True)
        if banned is not None:
            s[:, banned] = -np.inf
        if candidates is not None:
            top, vals = topk(s[:, candidates], min(N, candidates.size))
            top = np.where(top >= 0, candidates[np.maximum(top, 0)], -1)
        else:
            top, vals = topk(s, min(N, self.n_items_))
        if scalar:
            keep = top[0] >= 0
            return top[0][keep], vals[0][keep]
        return top, vals

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        factors = getattr(self, "item_factors", None)
        if factors is None:
            raise NotImplementedError(f"{type(self).__name__} does not define item similarity.")
        norms = np.linalg.norm(factors, axis=1)
        norms[norms == 0] = 1
        normed = factors / norms[:, None]
        return normed[itemids] @ normed.T

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_state(self, arrays: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path, metadata: dict | None = None) -> Path:
        """Write arrays + JSON metadata (class, parameters, versions, sha256 of each array) to an
        ``.npz`` file. Never pickles; :func:`recfb.load` reads it back. ``metadata`` (JSON-able,
        e.g. the dataset and split a model was trained on) comes back as ``model.metadata_``."""
        check_is_fitted(self, "n_items_")
        arrays = {k: np.ascontiguousarray(v) for k, v in self._get_state().items()}
        for k, v in arrays.items():
            if v.dtype == object:
                raise TypeError(f"state array {k!r} has dtype object, which cannot be saved without pickle.")
        arrays["n_users_"] = np.asarray(self.n_users_, np.int64)
        arrays["n_items_"] = np.asarray(self.n_items_, np.int64)
        params = self.get_params()
        try:
            json.dumps(params)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__} parameters must be JSON-serialisable to save: {exc}") from None
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "recfb_version": __version__,
            "numpy_version": np.__version__,
            "params": params,
            "user_metadata": metadata or {},
            "sha256": {k: _digest(v) for k, v in arrays.items()},
        }
        arrays[_METADATA_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return path


def load(path) -> Recommender:
    """Load a model written by :meth:`Recommender.save` (no unpickling; checksums verified)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    arrays, meta = read_npz_with_metadata(path, FORMAT, FORMAT_VERSION, what="recfb model")
    cls = _REGISTRY.get(meta.get("class"))
    if cls is None:
        raise FormatError(f"{path}: unknown model class {meta.get('class')!r}; known: {sorted(_REGISTRY)}.")
    model = cls(**meta["params"])
    model.n_users_ = int(arrays.pop("n_users_"))
    model.n_items_ = int(arrays.pop("n_items_"))
    model._set_state(arrays)
    model.metadata_ = meta.get("user_metadata", {})
    return model


def read_npz_with_metadata(path, fmt: str, version: int, what: str):
    """Read an ``.npz`` + embedded JSON metadata and verify format, version and checksums."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise FormatError(f"{path} is not a readable {what} file (truncated or not an .npz): {exc}") from None
    if _METADATA_KEY not in arrays:
        raise FormatError(f"{path} has no recfb metadata; it is not a {what} file.")
    try:
        meta = json.loads(arrays.pop(_METADATA_KEY).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: metadata is not valid JSON ({exc}).") from None
    if meta.get("format") != fmt:
        raise FormatError(f"{path} holds {meta.get('format')!r}, not a {what} ({fmt!r}).")
    found = meta.get("format_version")
    if not isinstance(found, int) or found > version:
        raise FormatError(f"{path} was written in format version {found}, newer than this recfb "
                          f"({__version__}) reads (<= {version}); upgrade recfb.")
    sums = meta.get("sha256", {})
    if set(sums) != set(arrays):
        raise FormatError(f"{path}: arrays {sorted(arrays)} do not match the metadata {sorted(sums)}; file tampered with.")
    for k, v in arrays.items():
        if _digest(v) != sums[k]:
            raise FormatError(f"{path}: checksum mismatch for array {k!r}; the file is corrupted or was tampered with.")
    return arrays, meta


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def pack_csr(prefix: str, M: sp.csr_matrix) -> dict:
    """Arrays that store a CSR matrix in a state dict."""
    M = sp.csr_matrix(M)
    return {f"{prefix}.data": M.data, f"{prefix}.indices": M.indices, f"{prefix}.indptr": M.indptr,
            f"{prefix}.shape": np.asarray(M.shape, np.int64)}


def unpack_csr(prefix: str, arrays: dict) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{prefix}.shape"])
    return sp.csr_matrix((arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]), shape=shape)


def topk(scores: np.ndarray, k: int):
    """Row-wise top-``k`` of a dense score block: (ids int32, scores float32), best first.
    Entries scored ``-inf`` (filtered) come back as id -1."""
    n_rows, n_cols = scores.shape
    if k <= 0 or n_cols == 0:
        return np.empty((n_rows, 0), np.int32), np.empty((n_rows, 0), np.float32)
    k = min(k, n_cols)
    if k < n_cols:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int32)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    ids[np.isneginf(vals)] = -1
    return ids, vals


def _blocks(n_rows: int, n_cols: int):
    step = max(1, _BLOCK_BYTES // (4 * max(n_cols, 1)))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def _check_item_list(items, n_items: int, name: str) -> np.ndarray:
    arr = np.asarray(items)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D item ids, got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer item ids, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_items):
        raise DataError(f"{name} must be item ids in 0..{n_items - 1}, got {arr.min()}..{arr.max()}.")
    return arr
