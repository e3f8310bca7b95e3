"""Ask a running recfb service for recommendations (a thin client; the server is `recfb serve`).

Train, export with the users bundled, serve, then query:

    recfb train --dataset ml-100k --model als -o als.npz
    recfb export --model als.npz --kind hnsw --target-recall 0.95 -o als.index
    recfb serve --index als.index --port 8000 &          # FastAPI on uvicorn; docs at /docs
    python examples/service.py --url http://127.0.0.1:8000 --user 196 --k 5
    python examples/service.py --url http://127.0.0.1:8000 --users 196 186 --k 5 --similar 242

The service answers GET /recommend?user=&k=, POST /recommend (batches, extra exclusions,
filters), GET /similar?item=&k= and GET /health; every mistake is a 4xx with
``{"error", "field"}``, which this client raises as :class:`ServiceError`. Needs httpx
(``pip install 'recfb[serve]'``).
"""
from __future__ import annotations

import argparse
import json
import sys


class ServiceError(Exception):
    """A 4xx/5xx answer: the status, the server's message and the field it names."""

    def __init__(self, status: int, body: dict):
        self.status, self.field = status, body.get("field")
        super().__init__(f"{status}: {body.get('error', body)}")


def _check(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code >= 400:
        raise ServiceError(response.status_code, body)
    return body


def recommend(client, user, k: int = 10) -> dict:
    """``{"user", "k", "items", "scores"}`` for one user (items they saw never come back)."""
    return _check(client.get("/recommend", params={"user": user, "k": k}))


def recommend_many(client, users, k: int = 10, exclude=None, filter_items=None) -> list[dict]:
    """One ``{"user", "items", "scores"}`` per user; ``exclude``: per-user item ids to skip."""
    payload = {"users": list(users), "k": k, "exclude": exclude, "filter_items": filter_items}
    return _check(client.post("/recommend", json=payload))["results"]


def similar(client, item, k: int = 10) -> dict:
    return _check(client.get("/similar", params={"item": item, "k": k}))


def health(client) -> dict:
    return _check(client.get("/health"))


def main(argv=None) -> int:
    import httpx
    p = argparse.ArgumentParser(description="Query a running `recfb serve`.")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--user", help="one user (GET /recommend)")
    p.add_argument("--users", nargs="+", help="several users (POST /recommend)")
    p.add_argument("--similar", help="an item: its most similar items (GET /similar)")
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)
    with httpx.Client(base_url=args.url, timeout=10.0) as client:
        try:
            print(json.dumps(health(client)))
            if args.user is not None:
                print(json.dumps(recommend(client, args.user, args.k)))
            if args.users:
                for row in recommend_many(client, args.users, args.k):
                    print(json.dumps(row))
            if args.similar is not None:
                print(json.dumps(similar(client, args.similar, args.k)))
        except ServiceError as exc:
            print(f"service refused the request: {exc}", file=sys.stderr)
            return 1
        except httpx.TransportError as exc:
            print(f"no service at {args.url}: {exc}; start one with `recfb serve --index DIR`", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
