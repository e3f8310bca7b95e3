"""The peer of benchmarks/serving_http.py: the stdlib service that ``recfb serve`` replaced.

This was ``examples/service.py`` until the FastAPI service (recfb.serving.app) took its
place; it is kept, unchanged, only so the load test can compare the two in one run. Do not
serve with it: its listen backlog is 5 and idle connections are never closed. Its old doc:

A small recommendation service on the standard library's HTTP server.

It loads an index exported by ``recfb export`` (or ``recfb.serving.export``) once, with the
users bundled in it, and answers::

    GET /recommend?user=<external user id>&k=<int>
        200 {"user": "42", "k": 10, "items": [...], "scores": [...]}
    GET /health
        200 {"status": "ok", "index": "...", "n_items": ..., "n_users": ...}

Bad requests get a JSON body ``{"error": "..."}``: 400 when ``user`` or ``k`` is missing, ``k``
is not an integer, ``k <= 0`` or ``k > --max-k`` (default 1000; large k is refused rather than
silently clamped, so a client bug shows); 404 for an unknown user or path; 405 for other
methods. ``k`` above the catalogue size (but within ``--max-k``) returns the whole catalogue.
Items the user has already seen are never returned; users with fewer eligible items than
``k`` get a shorter list.

Run it:

    recfb train --dataset ml-100k --model als -o als.npz
    recfb export --model als.npz --kind hnsw -o als.index
    python benchmarks/serving_stdlib_baseline.py --index als.index --port 8000
    curl 'http://127.0.0.1:8000/recommend?user=196&k=5'

The server is a ThreadingHTTPServer: one thread per request, all sharing the index (its
search is thread-safe).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

from recfb.serving import ItemIndex, UnknownUserError

DEFAULT_MAX_K = 1000


class RecommendHandler(BaseHTTPRequestHandler):
    server_version = "recfb-service/1"
    # set on the server: index, max_k, quiet

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urlparse(self.path)
        try:
            if url.path == "/recommend":
                self._reply(HTTPStatus.OK, self._recommend(parse_qs(url.query)))
            elif url.path == "/health":
                index = self.server.index
                self._reply(HTTPStatus.OK, {"status": "ok", "index": repr(index), "n_items": index.n_items,
                                            "n_users": index.users.n_users})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {url.path!r}; use /recommend"})
        except _BadRequest as exc:
            self._reply(exc.status, {"error": exc.message})
        except Exception as exc:  # never let a request kill the server; say what failed
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})

    def do_POST(self):  # noqa: N802
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET /recommend?user=...&k=..."})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _recommend(self, query: dict) -> dict:
        user = _single(query, "user")
        raw_k = _single(query, "k", default="10")
        try:
            k = int(raw_k)
        except ValueError:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"k must be an integer, got {raw_k!r}") from None
        if k <= 0:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"k == {k}, must be >= 1")
        if k > self.server.max_k:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"k == {k}, must be <= {self.server.max_k} (this service's limit)")
        try:
            ids, scores = self.server.index.recommend_users([user], k, ids="external")
        except UnknownUserError as exc:
            raise _BadRequest(HTTPStatus.NOT_FOUND, str(exc)) from None
        keep = scores[0] > -np.inf  # drop padding: users with fewer eligible items get fewer
        items = ids[0][keep].tolist()
        return {"user": user, "k": k, "items": items, "scores": [round(float(s), 6) for s in scores[0][keep]]}

    def _reply(self, status: HTTPStatus, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _single(query: dict, name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values:
        if default is not None:
            return default
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f"missing query parameter {name!r}")
    if len(values) > 1:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f"query parameter {name!r} given {len(values)} times")
    return values[0]


def make_server(index: ItemIndex, host: str = "127.0.0.1", port: int = 8000, max_k: int = DEFAULT_MAX_K,
                quiet: bool = False) -> ThreadingHTTPServer:
    """A server answering for ``index`` (which must have users attached). Port 0 picks a free one."""
    if index.users is None:
        raise ValueError("the index has no users attached; export it with a dataset (recfb export) first.")
    server = ThreadingHTTPServer((host, port), RecommendHandler)
    server.daemon_threads = True
    server.index, server.max_k, server.quiet = index, max_k, quiet
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="recfb-service", daemon=True)
    thread.start()
    return thread


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Serve top-k recommendations from an exported recfb index.")
    p.add_argument("--index", required=True, help="directory written by `recfb export`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--max-k", type=int, default=DEFAULT_MAX_K, help="largest k a request may ask for")
    p.add_argument("--quiet", action="store_true", help="no request log")
    args = p.parse_args(argv)
    index = ItemIndex.load(args.index)
    server = make_server(index, args.host, args.port, args.max_k, args.quiet)
    host, port = server.server_address[:2]
    print(f"serving {index!r} for {index.users.n_users} users on http://{host}:{port}/recommend", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
