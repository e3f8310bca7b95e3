"""The Recommender contract shared by every recfb model (implicit-compatible inference,
scikit-learn style parameters, pickle-free persistence).

A model implements ``fit`` and ``_score`` (dense scores for a block of users); everything a
user calls at inference (``recommend``, ``score``, ``similar_items``) and persistence
(``save``/``recfb.load``) is here, once.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recfb._version import __version__
from recfb.utils.container import METADATA_KEY, file_label, read_container, unpack_csr, write_container
from recfb.utils.errors import DataError, FormatError, UnknownIdError
from recfb.utils.params import validate_params
from recfb.utils.topk import topk_rows
from recfb.utils.validation import check_csr, check_is_fitted, check_positive_int, check_userids, rows_per_block

FORMAT = "recfb-model"
FORMAT_VERSION = 1
_METADATA_KEY = METADATA_KEY  # the container's metadata member
# Scores of one block of users stay under this many bytes (users x items float32).

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make ``recfb.load`` able to read files of the model class ``cls`` (recfb's own models
    register themselves; a user's subclass calls this, or uses it as a decorator). A second,
    different class under a name already taken raises instead of replacing it."""
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise TypeError(f"register() takes a Recommender subclass, got {cls!r}.")
    known = _REGISTRY.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"a model class named {cls.__name__!r} is already registered ({known.__module__}); "
                         "give the new class another name.")
    _REGISTRY[cls.__name__] = cls
    return cls


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

    #: parameter -> accepted values (:mod:`recfb.utils.params`), checked once at fit by
    #: :meth:`_validate_params`
    _parameter_constraints: dict = {}

    #: True when scores come from per-user parameters learnt at fit (users unseen at fit
    #: can then not be scored from their row alone).
    needs_fitted_users = False
    #: True when ``recommend(..., recalculate_user=True)`` folds users in from their rows
    #: (``_score_call`` then gets a :class:`ScoreCall` with ``recalculate=True``).
    supports_fold_in = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.split(".")[0] == "recfb":  # recfb's own models; others call register()
            register(cls)

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def _validate_params(self) -> None:
        """InvalidParameterError for the first parameter its constraints do not accept."""
        validate_params(type(self).__name__, self.get_params(), self._parameter_constraints)

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters, as in scikit-learn."""
        return {name: getattr(self, name) for name in self._param_names()}

    def derived_params(self, user_items) -> dict:
        """The values ``fit(user_items)`` would derive for the parameters left at None (EASE's
        ``l2``, MF's ``learning_rate`` ...), without fitting; ``{}`` for a model that derives
        none. :func:`recfb.tune.search` starts its study from them."""
        return {}

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
            raise UnknownIdError(f"userid {int(userids.max())} was not seen at fit ({self.n_users_} users, ids "
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
                raise UnknownIdError(f"items must be item ids in 0..{self.n_items_ - 1}, got "
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
        if candidates is not None and banned is not None:
            candidates = candidates[~np.isin(candidates, banned)]
        n_cand = n_items if candidates is None else candidates.size
        if banned is not None and candidates is None:
            n_cand -= np.unique(banned).size
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
                # as implicit: every candidate is ranked, the already-liked ones last with -inf
                top, vals = topk(s[:, candidates], k, keep_filtered=True)
                top = candidates[top].astype(np.int32)
            else:
                top, vals = topk(s, k)
            all_ids[start:stop], all_scores[start:stop] = top, vals
        if scalar:
            keep = all_ids[0] >= 0
            return all_ids[0][keep], all_scores[0][keep]
        return all_ids, all_scores

    def similar_items(self, itemid, N: int = 10, recalculate_item: bool = False, item_users=None,
                      filter_items=None, items=None):
        """Items most similar to ``itemid`` (int or array; the item itself usually first), in
        implicit's argument order. ``recalculate_item=True`` (folding items in from
        ``item_users``) is ALS-specific and raises NotImplementedError, as implicit's other
        models do; ``item_users`` alone is accepted and not needed."""
        check_is_fitted(self, "n_items_")
        if recalculate_item:
            raise NotImplementedError(f"{type(self).__name__} cannot fold items in (recalculate_item=True).")
        ids, scalar = check_userids(itemid, self.n_items_, name="itemid")
        return _nearest(self._similar_scores, ids, scalar, N, self.n_items_, filter_items, items, "items")

    def similar_users(self, userid, N: int = 10, filter_users=None, users=None):
        """Users most similar to ``userid`` (int or array; the user itself usually first), as
        implicit's ``similar_users``: cosine of the user factors (negative squared distance
        for distance models such as CML). Models without user factors raise
        NotImplementedError, as implicit's item-item models do."""
        check_is_fitted(self, "n_items_")
        if getattr(self, "user_factors", None) is None:
            raise NotImplementedError(f"{type(self).__name__} has no user factors to compare users by.")
        ids, scalar = check_userids(userid, self.user_factors.shape[0], name="userid")
        return _nearest(self._similar_user_scores, ids, scalar, N, self.user_factors.shape[0], filter_users, users,
                        "users")

    def _similar_user_scores(self, userids: np.ndarray) -> np.ndarray:
        if getattr(self, "metric", "ip") == "l2":  # distance models: -||u - v||^2
            return neg_sqdist_rows(self.user_factors, userids)
        return _cosine(self.user_factors, userids)

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        factors = getattr(self, "item_factors", None)
        if factors is None:
            raise NotImplementedError(f"{type(self).__name__} does not define item similarity.")
        return _cosine(factors, itemids)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_state(self, arrays: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path, metadata: dict | None = None):
        """Write arrays + JSON metadata (class, parameters, versions, dtype, shape and sha256 of
        each array) to an ``.npz`` file, or to a writable binary file object (as implicit's
        ``save``). Never pickles; :func:`recfb.load` (or ``Class.load``) reads it back.
        ``metadata`` (JSON-able, e.g. the dataset and split a model was trained on) comes back
        as ``model.metadata_``. Refuses NaN/inf in any array; a failed write leaves nothing
        behind (the file is written to ``<path>.tmp`` and renamed)."""
        check_is_fitted(self, "n_items_")
        arrays = {k: np.ascontiguousarray(v) for k, v in self._get_state().items()}
        for k, v in arrays.items():
            if v.dtype.hasobject:
                raise TypeError(f"state array {k!r} has dtype object, which cannot be saved without pickle.")
            if v.dtype.kind in "fc" and not np.isfinite(v).all():
                raise ValueError(f"state array {k!r} of {type(self).__name__} holds {int((~np.isfinite(v)).sum())} "
                                 "NaN or infinite values; refusing to save a broken model.")
        arrays["n_users_"] = np.asarray(self.n_users_, np.int64)
        arrays["n_items_"] = np.asarray(self.n_items_, np.int64)
        params = self._saved_params()
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{type(self).__name__} parameters must be JSON-serialisable to save: {exc}") from None
        meta = {"class": type(self).__name__, "recfb_version": __version__, "numpy_version": np.__version__,
                "params": params, "user_metadata": metadata or {}}
        return write_container(path, arrays, meta, FORMAT, FORMAT_VERSION)

    def _saved_params(self) -> dict:
        """The parameters as written in a model file's JSON (a model whose parameters may hold
        arrays keeps them with its state arrays and writes a marker here)."""
        return self.get_params()

    @classmethod
    def load(cls, path) -> "Recommender":
        """Load a model file (path or binary file object) written by :meth:`save`, as
        implicit's ``Model.load``; the file must hold this class (or a subclass)."""
        model = load(path)
        if not isinstance(model, cls):
            raise FormatError(f"{file_label(path)} holds a {type(model).__name__}, not a {cls.__name__}; "
                              "use recfb.load to read any model.")
        return model

    # ------------------------------------------------------------------ load-time validation
    def _check_params(self) -> None:
        """Parameter checks the model's ``fit`` starts with (type and range); models override."""
        check_common = getattr(self, "_check_common", None)
        if check_common is not None:
            check_common()

    def _check_state(self, arrays: dict) -> None:
        """Every state array's dtype, shape and finiteness against the parameters and
        ``n_users_``/``n_items_``; raises ValueError naming the array. The arrays recfb's
        models store are checked by name; a model with other arrays extends this."""
        nu, ni = self.n_users_, self.n_items_
        for name, a in arrays.items():
            if a.dtype.kind not in "biuf":
                raise ValueError(f"array {name!r} has dtype {a.dtype}, expected a numeric one.")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"array {name!r} holds NaN or infinite values.")

        def want(name, dtypes, shape):
            a = arrays[name]
            if a.dtype not in [np.dtype(d) for d in dtypes]:
                raise ValueError(f"array {name!r} has dtype {a.dtype}, expected {' or '.join(map(str, dtypes))}.")
            if len(a.shape) != len(shape) or any(w is not None and w != g for w, g in zip(shape, a.shape)):
                raise ValueError(f"array {name!r} has shape {a.shape}, expected {tuple(shape)} "
                                 f"({nu} users, {ni} items).")
            return a

        factors = getattr(self, "factors", None)
        widths = set()
        for name, rows in (("user_factors", nu), ("item_factors", ni)):
            if name in arrays:
                a = want(name, ["float32"], (rows, None))
                # biases add up to two columns (MF stores them as extra factor columns)
                if isinstance(factors, int) and not factors <= a.shape[1] <= factors + 2:
                    raise ValueError(f"array {name!r} has {a.shape[1]} columns, expected factors == {factors}.")
                widths.add(a.shape[1])
        if len(widths) > 1:
            raise ValueError(f"user_factors and item_factors have different widths {sorted(widths)}.")
        for name in ("item_popularity_", "propensity"):
            if name in arrays:
                want(name, ["float32", "float64"], (ni,))
        if "weights_" in arrays:
            want("weights_", ["float32"], (ni, ni))
        for prefix in sorted({k[:-len(".indptr")] for k in arrays if k.endswith(".indptr")}):
            unpack_csr(prefix, arrays, shape=(ni, ni))
        if "hist_indptr" in arrays:
            indptr = want("hist_indptr", ["int64"], (nu + 1,))
            items = want("hist_items", ["int64", "int32"], (None,))
            if indptr[0] != 0 or indptr[-1] != items.size or np.any(np.diff(indptr) < 0):
                raise ValueError("hist_indptr is not a non-decreasing offset array from 0 to len(hist_items).")
            if items.size and (items.min() < 0 or items.max() >= ni):
                raise ValueError(f"hist_items holds item ids outside 0..{ni - 1}.")


def _cosine(factors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine of ``factors[rows]`` with every row, in float64, within [-1, 1]; a nonzero row's
    cosine with itself is exactly 1."""
    f = np.asarray(factors, np.float64)
    norms = np.linalg.norm(f, axis=1)
    nonzero = norms > 0
    normed = f / np.where(nonzero, norms, 1.0)[:, None]
    c = np.clip(normed[rows] @ normed.T, -1.0, 1.0)
    r = np.arange(len(rows))
    c[r, rows] = np.where(nonzero[rows], 1.0, 0.0)
    return c


def neg_sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``-||a_r - b_c||^2`` (rows of ``a`` x rows of ``b``) as float32. Expanded as ``2 a.b -
    ||a||^2 - ||b||^2`` in float64: in float32 the expansion cancels near zero distance, so one
    user's scores and the same user's scores in a batch could differ in their leading digits."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = 2 * (a64 @ b64.T) - np.einsum("ij,ij->i", b64, b64)[None, :] - np.einsum("ij,ij->i", a64, a64)[:, None]
    return np.minimum(d, 0.0).astype(np.float32)


def neg_sqdist_rows(factors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """:func:`neg_sqdist` of ``factors[rows]`` against every row of ``factors``, each row's
    distance to itself exactly 0 (even in float64 the expansion can round it to -3e-17), as
    :func:`_cosine` sets a row's own cosine to exactly 1."""
    rows = np.asarray(rows)
    d = neg_sqdist(factors[rows], factors)
    d[np.arange(rows.size), rows] = 0.0
    return d


def _nearest(score_fn, ids, scalar, N, n, filter_ids, candidates, what):
    """Top-``N`` of ``score_fn(ids)`` (rows x n) without ``filter_ids``, among ``candidates``.

    Each query is its own nearest neighbour (implicit's convention): it ranks first, with its
    own score, even where other rows have identical vectors (which tie with it exactly)."""
    N = check_positive_int(N, "N")
    cand = None if candidates is None else _check_item_list(candidates, n, what)
    banned = None if filter_ids is None else _check_item_list(filter_ids, n, f"filter_{what}")
    s = np.array(score_fn(ids), dtype=np.float32, copy=True)
    rows = np.arange(ids.size)
    own = s[rows, ids].copy()
    s[rows, ids] = np.inf
    if banned is not None:
        s[:, banned] = -np.inf
    if cand is not None:
        top, vals = topk(s[:, cand], min(N, cand.size))
        top = np.where(top >= 0, cand[np.maximum(top, 0)], -1).astype(np.int32)
    else:
        top, vals = topk(s, min(N, n))
    is_own = (top == ids[:, None]) & (top >= 0)
    vals = np.where(is_own, own[:, None], vals).astype(vals.dtype, copy=False)
    if scalar:
        keep = top[0] >= 0
        return top[0][keep], vals[0][keep]
    return top, vals


def _check_param_types(cls, params: dict) -> None:
    """Each stored parameter has the type of the constructor's default (an int where the
    default is an int, a number where it is a float, ...); None and other defaults are left
    to the model's own checks."""
    sig = inspect.signature(cls.__init__)
    for name, value in params.items():
        default = sig.parameters[name].default
        if default is None or default is inspect.Parameter.empty or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise ValueError(f"{name} == {value!r}, expected a {type(default).__name__} like the default {default!r}.")


def load(path) -> Recommender:
    """Load a model written by :meth:`Recommender.save` from a path or a binary file object
    (no unpickling). Checks, in order: the zip directory's declared sizes against the
    metadata's shapes (before anything is decompressed), format and version, every array's
    sha256, the parameters (types and the model's own checks), and every array's dtype,
    shape and finiteness against the parameters. Any failure raises FormatError."""
    label = file_label(path)
    if not hasattr(path, "read") and not Path(path).exists():
        raise FileNotFoundError(f"no such model file: {path}")
    arrays, meta = read_container(path, FORMAT, FORMAT_VERSION, what="recfb model")
    cls = _REGISTRY.get(meta.get("class")) if isinstance(meta.get("class"), str) else None
    if cls is None:
        known = sorted(n for n in _REGISTRY if not n.startswith("_"))
        raise FormatError(f"{label}: unknown model class {meta.get('class')!r}; known: {known} (a class of "
                          "your own: recfb.models.register(YourClass) before loading).")
    params, user_meta = meta.get("params"), meta.get("user_metadata", {})
    if not isinstance(params, dict) or not isinstance(user_meta, dict):
        raise FormatError(f"{label}: the metadata's params and user_metadata must be JSON objects.")
    unknown = sorted(set(params) - set(cls._param_names()))
    if unknown:
        raise FormatError(f"{label}: {cls.__name__} has no parameters {unknown}; the file is corrupted or from "
                          "another recfb.")
    try:
        _check_param_types(cls, params)
        model = cls(**params)
        model._check_params()
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{label}: invalid parameters for {cls.__name__}: {exc}") from None
    for name in ("n_users_", "n_items_"):
        a = arrays.pop(name, None)
        if a is None or a.shape != () or a.dtype != np.int64 or not 0 <= int(a) < 2**31:
            raise FormatError(f"{label}: {name} must be a scalar int64 in 0..2**31-1, got {a!r}.")
        setattr(model, name, int(a))
    try:
        model._check_state(arrays)
        model._set_state(arrays)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        raise FormatError(f"{label}: the arrays do not fit a {cls.__name__} of these parameters: "
                          f"{type(exc).__name__}: {exc}") from None
    model.metadata_ = user_meta
    return model


def topk(scores: np.ndarray, k: int, keep_filtered: bool = False):
    """Row-wise top-``k`` of a dense score block (ids int32, scores float32, best first; -inf
    entries as id -1 unless ``keep_filtered``): :func:`recfb.utils.topk.topk_rows`."""
    return topk_rows(scores, k, keep_filtered=keep_filtered)


def _blocks(n_rows: int, n_cols: int):
    step = rows_per_block(4 * max(n_cols, 1))
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
        raise UnknownIdError(f"{name} must be ids in 0..{n_items - 1}, got {arr.min()}..{arr.max()}.")
    return arr
