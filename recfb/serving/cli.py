"""``recfb export``: the command's parser and action, wired into recfb.cli.main."""
from __future__ import annotations

import json
import sys
import time

KIND_CHOICES = ("exact", "hnsw", "ivf")


def add_export_parser(subparsers):
    """Add the ``export`` sub-command to an argparse ``subparsers`` object."""
    e = subparsers.add_parser("export", help="write a serving index (faiss file + JSON metadata) from a saved model",
                              description="Build an ItemIndex from a model written by `recfb train` and save it as a "
                                          "directory that recfb.serving.ItemIndex.load (and examples/service.py) reads.")
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
    e.set_defaults(func=cmd_export)
    return e


def _parse_params(pairs) -> dict:
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
                   device=args.device, quiet=quiet, **_parse_params(args.param))
    users = 0 if index.users is None else index.users.n_users
    print(f"exported {index!r} with {users} users to {args.output} in {time.perf_counter() - t0:.2f} s")
    if not quiet:
        print("serve it with: python examples/service.py --index " + str(args.output), file=sys.stderr)
    return 0
