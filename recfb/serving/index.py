"""``ItemIndex``: top-k retrieval over a catalogue, for embedding and item-item models alike."""
from __future__ import annotations

import threading
import warnings

import numpy as np

from recfb.serving import _ann, _faiss, _inputs, persist
from recfb.serving._exact import ExactSearcher, select_topk
from recfb.serving._params import KINDS, METRICS, positive_int, resolve_device, resolve_params
from recfb.serving.users import UserTable
from recfb.utils.errors import DataError
from recfb.utils.validation import rows_per_block


class ItemIndex:
    """Top-k items for a batch of queries, with exclusion of already-seen items.

    Build one with :meth:`from_model` (any object with ``item_factors``, or an item-item
    recfb model such as ItemKNN or EASE), :meth:`from_vectors` or :meth:`load`.

    - **Embedding indices** (``query_kind == "vector"``) take user vectors ``(n, dim)``
      float32 as queries and rank items by inner product (``metric="ip"``) or by Euclidean
      distance (``metric="l2"``). Kinds: ``"exact"`` (blocked torch matmul + grouped top-k;
      faiss ``IndexFlat`` is the stored form), ``"hnsw"`` (faiss ``IndexHNSWFlat``: ``M``,
      ``efConstruction``, ``efSearch``), ``"ivf"`` (faiss ``IndexIVFFlat``, or
      ``IndexIVFPQ`` when ``pq_m`` is given: ``nlist``, ``nprobe``, ``pq_m``, ``pq_bits``).
    - **Item-item indices** (``query_kind == "history"``, kind ``"exact"``) take user
      history rows (a sparse ``n x n_items`` matrix) and rank by the model's own ``score``.

    Either way a service calls the same :meth:`search` (or :meth:`recommend_users` with the
    users bundled at export), so it need not know which model it loaded.

    Scores are always higher-is-better: the inner product for ``"ip"``, and the **negative
    squared Euclidean distance** ``-||q - x||^2`` for ``"l2"``. Rows with fewer than ``k``
    eligible items are padded with id ``-1`` and score ``-inf``.

    Searching is thread-safe: indices are only read, per-call settings go through faiss
    ``SearchParameters``, and faiss GPU calls are serialised.

    ``device="auto"`` uses a GPU when one can serve the kind: ``exact`` runs the same tiled
    kernel in torch on CUDA (no limit on k); ``ivf`` copies the index to the GPU through faiss
    GPU resources (a faiss-gpu build) and keeps the CPU index as the reference, which answers
    requests above faiss GPU's k (and nprobe) cap of 2048 and filtered ones; ``hnsw`` has no
    faiss GPU version and stays on the CPU.
    """

    def __init__(self, *, kind, metric, n_items, dim=None, faiss_index=None, model=None, item_ids=None,
                 params=None, device="cpu", vectors=None, shard=None, calibration=None):
        self.kind = kind
        self.metric = metric
        self.n_items = int(n_items)
        self.dim = dim
        self.params = dict(params or {})
        self.device = device
        self.item_ids = None if item_ids is None else _check_item_ids(item_ids, self.n_items)
        self.users: UserTable | None = None
        self.shard = shard  # {"offset", "n_items_total", "index", "count"} for one shard of many
        self.model_class = type(model).__name__ if model is not None else None
        #: what calibration to a recall target chose and measured (None when not calibrated)
        self.calibration = calibration
        self._faiss = faiss_index
        self._model = model
        self._vectors = vectors if vectors is not None else (None if faiss_index is None else _faiss.flat_view(faiss_index))
        self._exact = None
        self._exact_lock = threading.Lock()
        self._gpu = None
        if faiss_index is not None and device == "cuda" and kind == "ivf":
            self._gpu = _faiss.GpuCopy(faiss_index)  # pragma: no cover - needs a GPU build

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_vectors(cls, item_vectors, metric: str = "ip", item_ids=None, kind: str = "exact",
                     device: str = "auto", *, target_recall: float | None = None, queries=None,
                     recall_k: int = 10, calibration_seed: int = 0, **index_params) -> "ItemIndex":
        """Index ``item_vectors`` (n_items x dim, float32) for ``metric`` "ip" or "l2".

        With ``target_recall`` (HNSW or IVF only), the search setting (``efSearch`` /
        ``nprobe``; ``M`` / ``nlist`` when that is not enough) is calibrated so that
        recall@``recall_k`` against exact search reaches the target on ``queries`` (a sample
        of user vectors, n >= 40): half of them choose the setting, the other half measure
        the recall stored in :attr:`calibration` (see :mod:`recfb.serving.calibrate`).
        Without it the defaults (:data:`DEFAULT_PARAMS`) stay as they are.
        """
        if metric not in METRICS:
            raise ValueError(f"metric == {metric!r}, must be one of {METRICS}.")
        if kind not in KINDS:
            raise ValueError(f"kind == {kind!r}, must be one of {KINDS}.")
        vectors = _check_vectors(item_vectors)
        n_items, dim = vectors.shape
        if target_recall is None:
            if queries is not None:
                raise ValueError("queries= is only used to calibrate to target_recall=; give target_recall too.")
            params = resolve_params(kind, index_params, n_items, dim=dim)
            return cls._build(vectors, metric, kind, params, item_ids, resolve_device(device, kind))
        from recfb.serving import calibrate
        target = calibrate.check_target(target_recall)
        if kind == "exact":
            raise ValueError("target_recall calibrates an approximate index (kind='hnsw' or 'ivf'); an exact "
                             "index always has recall 1.")
        knob = "efSearch" if kind == "hnsw" else "nprobe"
        if knob in index_params:
            raise ValueError(f"{knob} == {index_params[knob]!r} was given with target_recall; calibration chooses "
                             f"{knob}: give one or the other.")
        if queries is None:
            raise ValueError("target_recall needs queries=: a sample of user vectors (n_queries x "
                             f"{dim}, n_queries >= 40) to calibrate on.")
        q = _inputs.check_queries(queries, dim)
        k = min(positive_int(recall_k, "recall_k"), n_items)
        params = resolve_params(kind, index_params, n_items, dim=dim)
        device = resolve_device(device, kind)
        exact = ExactSearcher(vectors, metric, "cpu")
        index, calibration = calibrate.calibrate(
            lambda p: cls._build(vectors, metric, kind, p, item_ids, device),
            kind, params, q, lambda Q, kk: exact.search(Q, kk)[0], target, k, calibration_seed)
        index.calibration = calibration
        return index

    @classmethod
    def _build(cls, vectors, metric, kind, params, item_ids, device) -> "ItemIndex":
        if kind == "exact":
            index = _faiss.build_flat(vectors, metric)
        elif kind == "hnsw":
            index = _faiss.build_hnsw(vectors, metric, params["M"], params["efConstruction"])
        else:
            index = _faiss.build_ivf(vectors, metric, params["nlist"], params["pq_m"], params["pq_bits"],
                                     params["train_size"], params["seed"])
        return cls(kind=kind, metric=metric, n_items=vectors.shape[0], dim=vectors.shape[1], faiss_index=index,
                   item_ids=item_ids, params=params, device=device)

    @classmethod
    def from_model(cls, model, kind: str = "exact", device: str = "auto", item_ids=None, *,
                   target_recall: float | None = None, queries=None, n_calibration: int = 2000,
                   recall_k: int = 10, calibration_seed: int = 0, **index_params) -> "ItemIndex":
        """Index a fitted model's items.

        Embedding models (anything with ``item_factors``) are indexed by their item vectors
        with the model's ``metric`` attribute ("ip" when absent; CML sets "l2"). Item-item
        models (a recfb Recommender without factors that scores from the user's history,
        e.g. ItemKNN, EASE) get an exact index over their ``score``.

        ``target_recall`` calibrates an HNSW or IVF index as in :meth:`from_vectors`; the
        queries default to ``n_calibration`` user vectors drawn (seed ``calibration_seed``)
        from ``model.user_factors``.
        """
        factors = getattr(model, "item_factors", None)
        if factors is not None:
            metric = getattr(model, "metric", "ip") or "ip"
            if target_recall is not None and queries is None:
                users = getattr(model, "user_factors", None)
                if users is None:
                    raise ValueError(f"{type(model).__name__} has no user_factors to calibrate on; pass queries=.")
                users = np.asarray(users)
                n = min(positive_int(n_calibration, "n_calibration"), users.shape[0])
                rows = np.sort(np.random.default_rng(calibration_seed).choice(users.shape[0], n, replace=False))
                queries = users[rows]
            return cls.from_vectors(np.asarray(factors), metric=metric, item_ids=item_ids, kind=kind,
                                    device=device, target_recall=target_recall, queries=queries, recall_k=recall_k,
                                    calibration_seed=calibration_seed, **index_params)
        if target_recall is not None:
            raise ValueError(f"target_recall calibrates an approximate index; {type(model).__name__} is an item-item "
                             "model, served exactly (recall 1).")
        if not (hasattr(model, "score") and hasattr(model, "n_items_")):
            raise TypeError(f"{type(model).__name__} has neither item_factors nor a fitted score(userids, "
                            "user_items); it cannot be indexed.")
        if getattr(model, "needs_fitted_users", False):
            raise TypeError(f"{type(model).__name__} scores from per-user parameters and has no item_factors "
                            "to index.")
        if kind != "exact":
            raise ValueError(f"kind == {kind!r}: item-item models ({type(model).__name__}) are served by an exact "
                             "index over their score function; use kind='exact'.")
        if index_params:
            raise TypeError(f"an item-item index takes no index parameters, got {sorted(index_params)}.")
        resolve_device(device, "exact")  # validates the argument
        # the model's own score() runs where the model keeps its weights: numpy on the CPU
        return cls(kind="exact", metric="ip", n_items=model.n_items_, model=model, item_ids=item_ids, device="cpu")

    # ------------------------------------------------------------------ properties
    @property
    def query_kind(self) -> str:
        """"vector" (queries are user vectors) or "history" (queries are user-item rows)."""
        return "history" if self._model is not None else "vector"

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        what = self.model_class or f"{self.dim}-d vectors"
        cal = ""
        if self.calibration:
            c = self.calibration
            knob = "efSearch" if "efSearch" in c else "nprobe"
            cal = (f", calibrated {knob}={c[knob]}: recall@{c['k']} {c['recall']:.3f} on held-out queries (target "
                   f"{c['target_recall']}{'' if c.get('target_met', True) else ', NOT met'})")
        return (f"ItemIndex(kind={self.kind!r}, metric={self.metric!r}, n_items={self.n_items}, {what}, "
                f"device={self.device!r}, params={self.params}{cal})")

    # ------------------------------------------------------------------ search
    def search(self, queries, k: int = 10, exclude=None, filter_items=None, ids: str = "internal",
               efSearch: int | None = None, nprobe: int | None = None):
        """Top-``k`` items for each query.

        Parameters
        ----------
        queries : ndarray (n, dim) float32, or sparse (n, n_items) for item-item indices
            Other numeric dtypes are converted with a warning; NaN/inf raise DataError.
        k : int
            Items per query, >= 1; values above ``n_items`` are clamped to ``n_items``.
        exclude : sparse (n, n_items) or list of n int arrays, optional
            Items never to return for each query (e.g. ``user_items[userids]``).
        filter_items : array of int, optional
            Items never to return for any query.
        ids : "internal" or "external"
            Internal ids come back as int32; external ids (``item_ids`` given at build) keep
            their dtype, integer ids padded with -1, string ids with "".
        efSearch, nprobe : int, optional
            Per-call HNSW / IVF search settings (default: the index's).

        Returns
        -------
        ids : (n, k) int32 (or external ids), padded with -1
        scores : (n, k) float32, best first, padded with -inf
        """
        _inputs.check_ids_space(ids)
        if self._model is not None:
            q = _inputs.check_history(queries, self.n_items)
        else:
            q = _inputs.check_queries(queries, self.dim)
        k = _inputs.check_k(k, self.n_items)
        excl = _inputs.check_exclude(exclude, q.shape[0], self.n_items)
        banned = _inputs.check_filter_items(filter_items, self.n_items)
        if self._model is not None:
            top, scores = self._search_model(q, k, excl, banned)
        elif self.kind == "exact":
            top, scores = self._exact_searcher().search(q, k, excl, banned)
        else:
            efs = self.params.get("efSearch") if efSearch is None else positive_int(efSearch, "efSearch")
            npr = self.params.get("nprobe") if nprobe is None else positive_int(nprobe, "nprobe")
            if npr is not None and "nlist" in self.params:
                npr = min(npr, self.params["nlist"])
            top, scores = _ann.ann_search(self._faiss, q, k, excl, banned, efSearch=efs, nprobe=npr,
                                          fallback=lambda rows, kk, ex, bn: self._fallback(q, rows, kk, ex, bn),
                                          gpu=self._gpu)
        return self._map_ids(top, ids), scores.astype(np.float32, copy=False)

    recommend = search  # the one call a service makes, whatever model it loaded

    def recommend_users(self, users, k: int = 10, exclude_seen: bool = True, filter_items=None,
                        ids: str = "external", exclude=None):
        """Top-``k`` for users of the table bundled at export (:meth:`attach_users`).

        ``users`` are external user ids (internal ids when no user ids were attached); their
        vectors or history rows are the queries and, with ``exclude_seen``, their history
        rows are excluded. ``exclude`` adds per-user exclusions (internal item ids, as in
        :meth:`search`). Unknown users raise :class:`recfb.serving.UnknownUserError`.
        """
        if self.users is None:
            raise DataError("this index has no users attached; export it with a dataset or call attach_users().")
        rows = self.users.lookup(users)
        queries = self.users.history(rows) if self.query_kind == "history" else self.users.vectors(rows)
        seen = self.users.history(rows) if exclude_seen and self.users.user_items is not None else None
        extra = _inputs.check_exclude(exclude, rows.size, self.n_items)
        if extra is not None:
            seen = extra if seen is None else (abs(seen).astype(bool) + abs(extra).astype(bool)).astype(np.float32)
        return self.search(queries, k, exclude=seen, filter_items=filter_items, ids=ids)

    def similar(self, items, k: int = 10, filter_items=None, ids: str = "internal"):
        """Top-``k`` items like each of ``items`` (internal ids), the item itself excluded.

        Embedding indices query with the item's own vector (so "like" is the index's
        metric: inner product or L2); item-item indices with a one-item history, i.e. the
        items the model recommends to someone who saw only that item.
        """
        items = np.atleast_1d(np.asarray(items))
        if items.dtype.kind not in "iu" or items.ndim != 1:
            raise TypeError(f"items must be a 1-D array of integer item ids, got {items.dtype} {items.shape}.")
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            bad = items[(items < 0) | (items >= self.n_items)][0]
            raise DataError(f"item id {bad} is out of range; item ids are 0..{self.n_items - 1}.")
        import scipy.sparse as sp
        items = items.astype(np.int64)
        one_hot = sp.csr_matrix((np.ones(items.size, np.float32), items, np.arange(items.size + 1)),
                                shape=(items.size, self.n_items))
        if self.query_kind == "history":
            queries = one_hot
        else:
            queries = self._item_vectors(items)
        return self.search(queries, k, exclude=one_hot, filter_items=filter_items, ids=ids)

    def as_recommender(self, model=None):
        """This index behind implicit's ``recommend(userids, user_items, N, ...)``, so
        :func:`recfb.evaluation.ranking_metrics` (``index=``) scores what the index returns.
        Embedding indices take the query vectors from ``model.user_factors`` (or the
        attached users); item-item indices use ``user_items`` rows."""
        return _IndexRecommender(self, model)

    def attach_users(self, user_items=None, user_vectors=None, user_ids=None) -> "ItemIndex":
        """Bundle the users a service answers for: their histories (for exclusion, and as the
        queries of an item-item index), their vectors (queries of an embedding index) and
        their external ids. Saved with the index."""
        self.users = UserTable(user_items=user_items, user_vectors=user_vectors, user_ids=user_ids,
                               n_items=self.n_items, dim=self.dim, need_vectors=self.query_kind == "vector")
        return self

    # ------------------------------------------------------------------ internals
    def _exact_searcher(self) -> ExactSearcher:
        with self._exact_lock:
            if self._exact is None:
                if self._vectors is None:
                    raise RuntimeError("this index keeps no float vectors for exact search.")
                torch_device = "cuda" if self.device == "cuda" else "cpu"
                self._exact = ExactSearcher(self._vectors, self.metric, torch_device)
            return self._exact

    def _item_vectors(self, items: np.ndarray) -> np.ndarray:
        if self._vectors is not None:
            return np.ascontiguousarray(self._vectors[items])
        with self._exact_lock:  # IVF keeps no flat copy: faiss reconstructs through a direct map
            if getattr(self._faiss, "direct_map", None) is not None and self._faiss.direct_map.type == 0:
                self._faiss.make_direct_map()
        return np.stack([self._faiss.reconstruct(int(i)) for i in items]) if items.size else \
            np.empty((0, self.dim), np.float32)

    def _fallback(self, q, rows, k, excl, banned):
        """Exact answer for ``rows`` when the ANN index cannot give one cheaply."""
        if self._vectors is not None:
            return self._exact_searcher().search(q[rows], k, excl, banned)
        # IVF keeps no flat copy: probing every list is exhaustive (exact for IVF-Flat).
        return _ann.exhaustive_ivf(self._faiss, q[rows], k, excl, banned)

    def _search_model(self, rows, k, excl, banned):
        n = rows.shape[0]
        out_ids = np.empty((n, k), np.int64)
        out_scores = np.empty((n, k), np.float32)
        step = rows_per_block(4 * self.n_items)
        for start in range(0, n, step):
            stop = min(n, start + step)
            s = np.asarray(self._model.score(np.arange(stop - start), rows[start:stop]), dtype=np.float32)
            ex = None if excl is None else excl[start:stop]
            out_ids[start:stop], out_scores[start:stop] = select_topk(s, k, ex, banned)
        return out_ids, out_scores

    def _map_ids(self, top: np.ndarray, space: str) -> np.ndarray:
        if space == "internal" or self.item_ids is None:
            if space == "external" and self.item_ids is None:
                warnings.warn("this index has no external item ids; returning internal ids.", stacklevel=3)
            return top.astype(np.int32)
        ext = self.item_ids[np.maximum(top, 0)]
        pad = "" if ext.dtype.kind in "US" else -1
        return np.where(top >= 0, ext, pad)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the index to the directory ``path``: ``index.faiss`` (faiss.write_index; for
        item-item indices ``model.npz``, a recfb model file), ``arrays.npz`` (ids, users) and
        ``metadata.json`` (kind, metric, parameters, versions, sha256 of every file)."""
        return persist.save_index(self, path)

    @classmethod
    def load(cls, path, device: str = "auto") -> "ItemIndex":
        """Read an index written by :meth:`save`. Checks format, versions and checksums and
        never unpickles; problems raise :class:`recfb.utils.errors.FormatError`."""
        return persist.load_index(cls, path, device)


def _check_vectors(item_vectors) -> np.ndarray:
    arr = np.asarray(item_vectors)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"item vectors must be a non-empty 2-D array (n_items x dim), got shape {arr.shape}.")
    if arr.dtype != np.float32:
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
            raise TypeError(f"item vectors must be float32, got dtype {arr.dtype}.")
        warnings.warn(f"item vectors were converted from {arr.dtype} to float32.", stacklevel=3)
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        row = int(np.argmax(~np.isfinite(arr).all(axis=1)))
        raise DataError(f"item vectors contain a non-finite value (NaN or inf) in row {row}.")
    return np.ascontiguousarray(arr)


def _check_item_ids(item_ids, n_items: int) -> np.ndarray:
    from recfb.data.idmap import IdMap
    ids = IdMap(item_ids, "item_ids").ids  # validates types and uniqueness
    if ids.size != n_items:
        raise DataError(f"item_ids has {ids.size} ids for {n_items} items.")
    return ids


class _IndexRecommender:
    """implicit's ``recommend`` answered by an ItemIndex (what ranking_metrics calls)."""

    def __init__(self, index: ItemIndex, model=None):
        self.index = index
        self.user_factors = None
        if index.query_kind == "vector":
            factors = getattr(model, "user_factors", None)
            if factors is None and index.users is not None:
                factors = index.users.user_vectors
            if factors is None:
                raise ValueError("an embedding index needs user vectors to recommend: pass the model (with "
                                 "user_factors) or attach users.")
            self.user_factors = np.asarray(factors, dtype=np.float32)

    def recommend(self, userids, user_items, N=10, filter_already_liked_items=True, filter_items=None,
                  recalculate_user=False, items=None):
        if recalculate_user:
            raise ValueError("recalculate_user folds users in through the model; an index serves stored vectors.")
        if items is not None:
            raise ValueError("items= (ranking a candidate subset) is not supported through an index.")
        userids = np.asarray(userids)
        one = userids.ndim == 0
        userids = np.atleast_1d(userids)
        queries = user_items if self.index.query_kind == "history" else self.user_factors[userids]
        exclude = user_items if filter_already_liked_items else None
        ids, scores = self.index.search(queries, N, exclude=exclude, filter_items=filter_items)
        return (ids[0], scores[0]) if one else (ids, scores)
