"""The recommendation service: an ASGI app (FastAPI) over one :class:`ItemIndex`.

    >>> from recfb.serving import ItemIndex
    >>> from recfb.serving.app import create_app
    >>> app = create_app(ItemIndex.load("als.index"), max_k=1000)   # run with uvicorn

``recfb serve --index DIR`` runs it on uvicorn (``pip install recfb[serve]``). Endpoints:

- ``GET /recommend?user=<external id>&k=<int>`` -> ``{"user", "k", "items", "scores"}``
- ``POST /recommend`` with ``{"users": [...], "k": 10, "exclude": [[...], ...] | null,
  "filter_items": [...] | null}`` (external item ids) -> ``{"k", "results": [{"user",
  "items", "scores"}, ...]}``
- ``GET /similar?item=<external id>&k=<int>`` -> ``{"item", "k", "items", "scores"}``
- ``GET /health`` -> index kind, metric, sizes, parameters, calibration, recfb version
- ``GET /openapi.json``, ``GET /docs``: FastAPI's schema and docs page

Items a user has seen (the histories bundled at export) are never returned; a user with
fewer eligible items than ``k`` gets a shorter list, never padding. ``k`` above the catalogue
(within ``max_k``) returns the whole eligible catalogue.

Every client mistake is a 4xx with ``{"error": "<what is wrong>", "field": "<name>" | null}``:
400 for a missing, duplicated or unknown query parameter and for ids that do not parse or
overflow int64; 422 for a value of the wrong type or out of range (``k`` outside
1..max_k, a batch larger than ``max_batch``); 404 for an unknown user, item or path; 405 for a
wrong method; 413 for a body over ``max_body_bytes``; 408 for a body not received within
``body_timeout`` seconds. A 5xx means a fault of the server, logged with its traceback.

Searching runs in the server's thread pool (``ItemIndex.search`` is thread-safe); request
bodies are read on the event loop, so a slow client holds a connection, not a thread.
"""
import asyncio
import json
import logging
import re
from typing import Optional, Union

import numpy as np

from recfb.serving.index import ItemIndex
from recfb.serving.users import UnknownUserError

logger = logging.getLogger("recfb.serving.app")

DEFAULT_MAX_K = 1000
DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_BODY_TIMEOUT = 10.0
_INT_ID = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)


class ClientError(Exception):
    """A request the client got wrong: answered with ``status`` and a JSON body."""

    def __init__(self, status: int, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _require_fastapi():
    try:
        import fastapi  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the serve extra is installed for tests
        raise ImportError("the recfb service needs FastAPI and uvicorn: pip install 'recfb[serve]'") from exc


def create_app(index: ItemIndex, *, max_k: int = DEFAULT_MAX_K, max_batch: int = DEFAULT_MAX_BATCH,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, body_timeout: float = DEFAULT_BODY_TIMEOUT):
    """A FastAPI app answering for ``index``, which must have users attached (``recfb
    export`` bundles them). ``max_k`` bounds ``k``, ``max_batch`` the users of one POST,
    ``max_body_bytes`` a request body and ``body_timeout`` the seconds to receive one."""
    _require_fastapi()
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from recfb._version import __version__
    from recfb.utils.validation import check_positive_int

    if not isinstance(index, ItemIndex):
        raise TypeError(f"index must be an ItemIndex, got {type(index).__name__}.")
    if index.users is None:
        raise ValueError("the index has no users attached; export it with a dataset (recfb export) or call "
                         "index.attach_users() first.")
    max_k = check_positive_int(max_k, "max_k")
    max_batch = check_positive_int(max_batch, "max_batch")
    max_body_bytes = check_positive_int(max_body_bytes, "max_body_bytes")
    if not float(body_timeout) > 0:
        raise ValueError(f"body_timeout == {body_timeout!r}, must be > 0 seconds.")
    ids = _Ids(index)

    Id = Union[StrictInt, StrictStr]

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        users: list[Id] = Field(min_length=1, max_length=max_batch, description="external user ids")
        k: StrictInt = Field(10, ge=1, le=max_k)
        exclude: Optional[list[list[Id]]] = Field(None, description="per user, external item ids never to return")
        filter_items: Optional[list[Id]] = Field(None, description="external item ids never to return to anyone")

    class ErrorBody(BaseModel):
        error: str
        field: Optional[str] = None

    class Recommendation(BaseModel):
        user: Id
        k: int
        items: list[Id]
        scores: list[float]

    class BatchResult(BaseModel):
        user: Id
        items: list[Id]
        scores: list[float]

    class BatchResponse(BaseModel):
        k: int
        results: list[BatchResult]

    class Similar(BaseModel):
        item: Id
        k: int
        items: list[Id]
        scores: list[float]

    errors = {status: {"model": ErrorBody} for status in (400, 404, 405, 413, 422)}
    app = FastAPI(title="recfb recommendation service", version=__version__,
                  description=f"Top-k recommendations from a recfb {index.kind} index over {index.n_items} items.")
    app.state.index = index

    def error(status: int, message: str, field: Optional[str] = None, headers=None):
        return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)

    @app.exception_handler(ClientError)
    async def _client_error(request, exc: ClientError):
        return error(exc.status, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0]
        field = _field_name(first.get("loc", ()))
        if first.get("type") == "missing":
            return error(400, f"missing query parameter {field!r}", field)
        return error(422, f"{field}: {first.get('msg', 'invalid value')}" if field else first.get("msg", "invalid"),
                     field)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint {request.url.path!r}; see /docs"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        return error(exc.status_code, message, None, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _server_error(request, exc: Exception):  # a bug or a broken index: log it whole
        logger.error("500 on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal server error (logged)")

    app.add_middleware(_BodyLimit, limit=max_body_bytes)

    def strict_query(request: Request, allowed: tuple) -> None:
        seen = {}
        for key, _ in request.query_params.multi_items():
            seen[key] = seen.get(key, 0) + 1
        for key, count in seen.items():
            if key not in allowed:
                raise ClientError(400, f"unknown query parameter {key!r}; this endpoint takes {list(allowed)}", key)
            if count > 1:
                raise ClientError(400, f"query parameter {key!r} given {count} times; give it once", key)

    @app.get("/recommend", response_model=None, responses={200: {"model": Recommendation}, **errors})
    def recommend(request: Request, user: str = Query(..., max_length=256, description="external user id"),
                  k: int = Query(10, ge=1, le=max_k, description=f"items to return, 1..{max_k}")):
        """Top-``k`` items for one user, never an item the user has seen."""
        strict_query(request, ("user", "k"))
        row = ids.user(user, "user")
        top, scores = _search_users(index, row, k, None, None)
        items, vals = _trim(top[0], scores[0])
        return JSONResponse({"user": ids.user_out(row[0]), "k": k, "items": items, "scores": vals})

    @app.post("/recommend", response_model=None, responses={200: {"model": BatchResponse}, **errors, 408: {"model": ErrorBody}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": BatchRequest.model_json_schema()}}}})
    async def recommend_batch(request: Request):
        """Top-``k`` for a batch of users, with optional per-user exclusions and a global filter."""
        strict_query(request, ())
        raw = await _read_body(request, max_body_bytes, float(body_timeout))
        try:
            payload = json.loads(raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
        except ClientError:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClientError(400, f"the body is not valid JSON: {exc}", "body") from None
        try:
            req = BatchRequest.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = _field_name(("body",) + tuple(first.get("loc", ())))
            raise ClientError(422, f"{field}: {first.get('msg', 'invalid value')}", field) from None
        rows = np.concatenate([ids.user(u, f"users[{j}]") for j, u in enumerate(req.users)])
        exclude = None
        if req.exclude is not None:
            if len(req.exclude) != len(req.users):
                raise ClientError(422, f"exclude has {len(req.exclude)} lists for {len(req.users)} users; give one "
                                       "list per user (or null)", "exclude")
            exclude = [ids.items(lst, f"exclude[{j}]") for j, lst in enumerate(req.exclude)]
        banned = None if req.filter_items is None else ids.items(req.filter_items, "filter_items")
        top, scores = await run_in_threadpool(_search_users, index, rows, req.k, exclude, banned)
        results = []
        for j, row in enumerate(rows):
            items, vals = _trim(top[j], scores[j])
            results.append({"user": ids.user_out(row), "items": items, "scores": vals})
        return JSONResponse({"k": req.k, "results": results})

    @app.get("/similar", response_model=None, responses={200: {"model": Similar}, **errors})
    def similar(request: Request, item: str = Query(..., max_length=256, description="external item id"),
                k: int = Query(10, ge=1, le=max_k, description=f"items to return, 1..{max_k}")):
        """Top-``k`` items like ``item`` (itself excluded): by the index's metric for
        embedding indices, by the model's scores for one-item histories for item-item ones."""
        strict_query(request, ("item", "k"))
        internal = ids.items([item], "item", single=True)
        top, scores = index.similar(internal, k, ids=_id_space(index))
        items, vals = _trim(top[0], scores[0])
        return JSONResponse({"item": ids.item_out(internal[0]), "k": k, "items": items, "scores": vals})

    @app.get("/health")
    def health(request: Request):
        """What is served: index kind, metric, sizes, parameters, calibration, versions."""
        strict_query(request, ())
        return JSONResponse({
            "status": "ok", "kind": index.kind, "metric": index.metric, "query_kind": index.query_kind,
            "n_items": index.n_items, "n_users": index.users.n_users, "dim": index.dim,
            "model_class": index.model_class, "device": index.device, "params": index.params,
            "calibration": _public_calibration(index.calibration), "max_k": max_k, "max_batch": max_batch,
            "version": __version__, "index": repr(index)})

    return app


# ----------------------------------------------------------------------------- helpers
class _BodyLimit:
    """Pure ASGI middleware (no per-request task, unlike ``@app.middleware``): a declared
    Content-Length over ``limit`` is a 413 before the body is read, a malformed one a 400."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    from fastapi.responses import JSONResponse
                    if not value.isdigit():
                        body = {"error": f"Content-Length {value.decode('latin-1')!r} is not a byte count",
                                "field": "Content-Length"}
                        return await JSONResponse(body, status_code=400)(scope, receive, send)
                    if int(value) > self.limit:
                        body = {"error": f"request body of {int(value)} bytes exceeds this service's limit of "
                                         f"{self.limit} bytes", "field": "body"}
                        return await JSONResponse(body, status_code=413)(scope, receive, send)
        await self.app(scope, receive, send)


class _Ids:
    """External ids of a request -> internal rows, with the status codes of the module doc."""

    def __init__(self, index: ItemIndex):
        from recfb.data.idmap import IdMap
        self.index = index
        table = index.users
        self.user_ids = table.user_ids
        self.n_users = table.n_users
        self.item_ids = index.item_ids
        self.item_map = None if index.item_ids is None else IdMap(index.item_ids, "item_ids")

    def user(self, value, field: str) -> np.ndarray:
        if self.user_ids is None:
            v = _parse_int(value, field, "user")
            if not 0 <= v < self.n_users:
                raise ClientError(404, f"unknown user {value!r}: user ids are 0..{self.n_users - 1}", field)
            return np.array([v], np.int64)
        key = _parse_int(value, field, "user") if self.user_ids.dtype.kind in "iu" else str(value)
        try:
            return self.index.users.lookup([key])
        except UnknownUserError:
            raise ClientError(404, f"unknown user {value!r}", field) from None

    def user_out(self, row):
        return int(row) if self.user_ids is None else self.user_ids[int(row)].item()

    def items(self, values, field: str, single: bool = False) -> np.ndarray:
        """Internal ids of external item ids; element j is named ``field[j]`` (or ``field``)."""
        n = self.index.n_items
        name = (lambda j: field) if single else (lambda j: f"{field}[{j}]")  # noqa: E731
        if self.item_map is None or self.item_ids.dtype.kind in "iu":
            keys = np.array([_parse_int(v, name(j), "item") for j, v in enumerate(values)], np.int64)
        else:
            keys = np.array([str(v) for v in values], dtype=str)
        if self.item_map is None:
            rows = np.where((keys >= 0) & (keys < n), keys, -1)
        else:
            rows = self.item_map.to_internal(keys, missing="ignore") if keys.size else np.empty(0, np.int64)
        if (rows < 0).any():
            j = int(np.argmax(rows < 0))
            hint = f": item ids are 0..{n - 1}" if self.item_map is None else ""
            raise ClientError(404, f"unknown item {values[j]!r}{hint}", name(j))
        return rows.astype(np.int64)

    def item_out(self, row):
        return int(row) if self.item_ids is None else self.item_ids[int(row)].item()


def _parse_int(value, field: str, what: str) -> int:
    """An integer id from a JSON int or a query string; 400 when it does not parse or
    leaves int64 (never an OverflowError)."""
    if isinstance(value, bool):
        raise ClientError(400, f"{what} id {value!r} is not an integer", field)
    if isinstance(value, int):
        v = value
    elif isinstance(value, str) and _INT_ID.fullmatch(value.strip()):
        v = int(value.strip())
    else:
        raise ClientError(400, f"{what} id {value!r} is not an integer (this index's {what} ids are integers)", field)
    if not _INT64[0] <= v <= _INT64[1]:
        raise ClientError(400, f"{what} id {value!r} is outside the int64 range of ids", field)
    return v


def _search_users(index: ItemIndex, rows: np.ndarray, k: int, exclude, banned):
    """recommend_users by internal rows (the ids were resolved by the request parser)."""
    users = index.users
    queries = users.history(rows) if index.query_kind == "history" else users.vectors(rows)
    seen = users.history(rows) if users.user_items is not None else None
    if exclude is not None:
        from recfb.serving import _inputs
        extra = _inputs.check_exclude(exclude, rows.size, index.n_items)
        seen = extra if seen is None else (abs(seen).astype(bool) + abs(extra).astype(bool)).astype(np.float32)
    return index.search(queries, k, exclude=seen, filter_items=banned, ids=_id_space(index))


def _id_space(index: ItemIndex) -> str:
    return "internal" if index.item_ids is None else "external"


def _trim(ids: np.ndarray, scores: np.ndarray):
    keep = scores > -np.inf  # padding: fewer eligible items than k
    return ids[keep].tolist(), [float(s) for s in scores[keep]]


def _field_name(loc) -> Optional[str]:
    """``("body", "users", 0, "int")`` -> ``"users[0]"`` (pydantic's union-branch tags and
    the location prefix dropped; a whole-body problem is ``"body"``)."""
    parts = [str(p) for p in loc if p not in ("query", "path", "int", "str")]
    if len(parts) > 1 and parts[0] == "body":
        parts = parts[1:]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ClientError(400, f"the JSON body gives key {dup!r} more than once", dup)
    return dict(pairs)


def _no_constant(name):
    raise ClientError(400, f"the JSON body holds {name}, which is not valid JSON", "body")


async def _read_body(request, limit: int, timeout: float) -> bytes:
    """The body, at most ``limit`` bytes (413 beyond, also without Content-Length), within
    ``timeout`` seconds (408)."""
    chunks, size = [], 0

    async def read():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ClientError(413, f"request body exceeds this service's limit of {limit} bytes", "body")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise ClientError(408, f"the request body did not arrive within {timeout:g} s", "body") from None
    return b"".join(chunks)


def _public_calibration(cal):
    if not cal:
        return None
    return {key: value for key, value in cal.items() if key != "history"}


# ----------------------------------------------------------------------------- uvicorn
CONFIG_ENV = "RECFB_SERVE_CONFIG"


def app_from_env():
    """The app of ``recfb serve``: uvicorn calls this once per worker process (factory), so
    each worker loads the index once. Settings come as JSON in ``$RECFB_SERVE_CONFIG``."""
    import os
    config = json.loads(os.environ[CONFIG_ENV])
    threads = config.get("threads")
    if threads:
        import faiss
        import torch
        torch.set_num_threads(int(threads))
        faiss.omp_set_num_threads(int(threads))
    index = ItemIndex.load(config["index"], device=config.get("device", "auto"))
    return create_app(index, max_k=config.get("max_k", DEFAULT_MAX_K), max_batch=config.get("max_batch", DEFAULT_MAX_BATCH),
                      max_body_bytes=config.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
                      body_timeout=config.get("body_timeout", DEFAULT_BODY_TIMEOUT))
