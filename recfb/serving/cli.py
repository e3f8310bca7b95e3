"""``recfb export`` and ``recfb serve``: the commands' parsers and actions, wired into recfb.cli.main."""
from __future__ import annotations

import json
import sys
import time

KIND_CHOICES = ("exact", "hnsw", "ivf")


def add_export_parser(subparsers):
    """Add the ``export`` sub-command to an argparse ``subparsers`` object."""
    e = subparsers.add_parser("export", help="write a serving index (faiss file + JSON metadata) from a saved model",
                              description="Build an ItemIndex from a model written by `recfb train` and save it as a "
                                          "directory that recfb.serving.ItemIndex.load reads, and `recfb serve` serves.")
    e.add_argument("--model", required=True, help="a model file written by `recfb train`")
    e.add_argument("--output", "-o", required=True, help="index directory to write")
    e.add_argument("--kind", choices=KIND_CHOICES, default="exact",
                   help="exact (default), hnsw or ivf; item-item models are always exact")
    e.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="index parameter, repeatable: M, efConstruction, efSearch (hnsw); nlist, nprobe, pq_m, "
                        "pq_bits (ivf)")
    e.add_argument("--dataset", help="dataset whose ids and histories to bundle (default: the model's own)")
    e.add_argument("--no-users", action="store_true", help="do not bundle users (item index only)")
    e.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="build device (default cpu)")
    e.add_argument("--target-recall", type=float, default=None, metavar="R",
                   help="hnsw/ivf: calibrate efSearch/nprobe (and M/nlist if needed) so that recall@k against exact "
                        "search reaches R on held-out user vectors; stored in the index metadata")
    e.add_argument("--recall-k", type=int, default=10, metavar="K", help="k of the calibrated recall (default 10)")
    e.set_defaults(func=cmd_export)
    return e


def parse_key_values(pairs) -> dict:
    """``["key=value", ...]`` -> dict, values parsed as JSON when they are (``M=32`` -> 32)."""
    params = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--param expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def cmd_export(args) -> int:
    from recfb.serving.export import export
    quiet = getattr(args, "quiet", False)
    t0 = time.perf_counter()
    index = export(args.model, args.output, kind=args.kind, dataset=args.dataset,
                   data_dir=getattr(args, "data_dir", None), include_users=not args.no_users,
                   device=args.device, quiet=quiet, target_recall=args.target_recall, recall_k=args.recall_k,
                   **parse_key_values(args.param))
    users = 0 if index.users is None else index.users.n_users
    print(f"exported {index!r} with {users} users to {args.output} in {time.perf_counter() - t0:.2f} s")
    if not quiet:
        print("serve it with: recfb serve --index " + str(args.output), file=sys.stderr)
    return 0


def add_serve_parser(subparsers):
    """Add the ``serve`` sub-command: the HTTP service (recfb.serving.app) on uvicorn."""
    s = subparsers.add_parser("serve", help="serve an exported index over HTTP (FastAPI on uvicorn)",
                              description="Answer GET/POST /recommend, GET /similar and GET /health for an index "
                                          "written by `recfb export` (with its users). Needs `pip install "
                                          "'recfb[serve]'`. Each worker process loads the index once.")
    s.add_argument("--index", required=True, help="directory written by `recfb export`")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="worker processes, each with the index loaded (default 1)")
    s.add_argument("--threads", type=int, default=None,
                   help="torch/faiss threads per worker (default: cores / workers when workers > 1)")
    s.add_argument("--max-k", type=int, default=1000, help="largest k a request may ask for (default 1000)")
    s.add_argument("--max-batch", type=int, default=1000, help="most users in one POST /recommend (default 1000)")
    s.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)")
    s.add_argument("--timeout-keep-alive", type=float, default=5.0,
                   help="seconds an idle connection stays open, and a request's headers may take to arrive "
                        "(default 5)")
    s.add_argument("--limit-concurrency", type=int, default=512,
                   help="connections + tasks at once before uvicorn answers 503 (default 512)")
    s.add_argument("--backlog", type=int, default=2048, help="listen backlog (default 2048)")
    s.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="search device (default auto)")
    s.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn log level (default warning; info logs every request)")
    s.set_defaults(func=cmd_serve)
    return s


def cmd_serve(args) -> int:
    import os
    from pathlib import Path

    from recfb.serving.app import CONFIG_ENV, _require_fastapi
    from recfb.serving.persist import read_metadata
    for name in ("port", "workers", "max_k", "max_batch", "max_body_bytes", "limit_concurrency", "backlog"):
        value = getattr(args, name)
        low = 0 if name == "port" else 1
        if value < low or (name == "port" and value > 65535):
            raise ValueError(f"--{name.replace('_', '-')} == {value}, must be >= {low}"
                             + (" and <= 65535" if name == "port" else "") + ".")
    if args.timeout_keep_alive <= 0:
        raise ValueError(f"--timeout-keep-alive == {args.timeout_keep_alive}, must be > 0 seconds.")
    meta = read_metadata(Path(args.index))  # fail here, not in every worker, on a wrong path
    if not meta.get("has_users"):
        raise ValueError(f"{args.index} has no users bundled; export it with a dataset (recfb export) to serve it.")
    _require_fastapi()
    import uvicorn
    threads = args.threads
    if threads is None and args.workers > 1:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    os.environ[CONFIG_ENV] = json.dumps({"index": str(Path(args.index).resolve()), "max_k": args.max_k,
                                         "max_batch": args.max_batch, "max_body_bytes": args.max_body_bytes,
                                         "device": args.device, "threads": threads})
    print(f"serving {args.index} ({meta['kind']}, {meta['n_items']} items) on http://{args.host}:{args.port} "
          f"with {args.workers} worker(s); docs at /docs", file=sys.stderr, flush=True)
    from recfb.serving._uvicorn import http_protocol
    uvicorn.run("recfb.serving.app:app_from_env", factory=True, host=args.host, port=args.port, http=http_protocol(),
                workers=args.workers, timeout_keep_alive=args.timeout_keep_alive,
                limit_concurrency=args.limit_concurrency, backlog=args.backlog, log_level=args.log_level,
                access_log=args.log_level in ("info", "debug"))
    return 0
