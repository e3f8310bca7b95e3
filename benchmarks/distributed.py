"""Scale-out on torch.distributed (issue 18): R ranks vs 1 process, on this machine's CPUs.

    .venv/bin/python benchmarks/distributed.py                      # eval, ease, data rows (2 ranks vs 1)
    .venv/bin/python benchmarks/distributed.py --rows train         # needs fit(distributed=True)
    .venv/bin/python benchmarks/distributed.py --rows simulate      # 4 ranks, 1M x 200k, 100M draws
    .venv/bin/python benchmarks/distributed.py --quick              # ml-100k, small synthetic: smoke run
    .venv/bin/python benchmarks/distributed.py --output out.md

Every configuration runs in fresh processes started by ``python -m torch.distributed.run
--standalone --nproc_per_node=R benchmarks/distributed.py --worker ROW`` (gloo on CPU, NCCL
when CUDA is visible), R = 1 and R = ``--ranks``; each rank runs with ``--threads`` threads
(OMP/MKL/OpenBLAS/NUMBA and torch; default 1) and reports its wall times and peak RSS
(``resource.getrusage``). Rows:

- ``eval``: ``ranking_metrics(EASE(l2=500), k=(10, 20), distributed=True)`` on the ml-1m
  pairs (per-user 80/20, binarised, as the leaderboard): seconds, and whether every metric
  equals the 1-process one bit for bit.
- ``ease``: ``EASE(method="sparse", max_neighbors=128).fit(distributed=True)`` on ml-1m and on
  a 100,000 x 20,000 synthetic log (2M draws): seconds, NDCG@10, weights equal to 1 process.
- ``data``: ``Interactions.from_parquet(dir, rank=, world_size=)`` of the synthetic log
  written as 16 row groups: seconds, rows per rank, peak RSS per rank.
- ``train``: ``BPR(iterations=E)`` and ``MF(loss="bce", iterations=E)``, each at its default
  optimiser and with ``optimizer="adam"``, at equal epochs on ml-1m and the synthetic log:
  NDCG@10 (target: within 2% of 1 process), examples/s per rank, scaling efficiency
  ``(throughput at R ranks) / (R x throughput at 1)``, and whether every rank ends with the same
  weights. Distributed training always takes the autograd (Adam) path, while one process at the
  default optimiser may take the fused numba kernel: the ``adam`` rows compare like with like.
  Reported as skipped while ``fit`` takes no ``distributed=``.
- ``simulate``: 4 ranks, each generating its quarter of a 1,000,000 x 200,000 synthetic log
  (100M draws in all, ``recfb.distributed.synthetic_shard``: never whole in one process), then
  one epoch of ``BPR`` when ``fit`` supports it; peak RSS per rank.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

SYNTH = dict(n_users=100_000, n_items=20_000, n_interactions=2_000_000, n_clusters=64, seed=0)
QUICK_SYNTH = dict(n_users=5_000, n_items=2_000, n_interactions=100_000, n_clusters=16, seed=0)
SIM = dict(n_users=1_000_000, n_items=200_000, n_interactions=100_000_000, n_clusters=256, seed=0)


# ---------------------------------------------------------------------- data (in every rank)
def load_pairs(name):
    from _report import shared_data_dir

    import recfb
    from recfb.data import split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = recfb.datasets.load(name, data_dir=shared_data_dir(), quiet=True)
    train, test = split.random_holdout(ds, test_fraction=0.2, seed=0)
    return _binary(train.matrix), _binary(test.matrix)


def synthetic_split(spec):
    """The synthetic log, 20% of each user's rows held out (seeded; the same on every rank)."""
    from recfb.distributed import synthetic_shard

    X = synthetic_shard(**spec)
    rng = np.random.default_rng(1)
    test = rng.random(X.nnz) < 0.2
    coo = X.tocoo()
    part = lambda m: sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=X.shape)  # noqa: E731
    return part(~test), part(test)


def _binary(X):
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sum_duplicates()
    X.data[:] = 1.0
    X.sort_indices()
    return X


def datasets(quick):
    return [("ml-100k" if quick else "ml-1m", lambda: load_pairs("ml-100k" if quick else "ml-1m")),
            ("synthetic", lambda: synthetic_split(QUICK_SYNTH if quick else SYNTH))]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- worker rows
def row_eval(comm, args):
    from recfb.evaluation import ranking_metrics
    from recfb.models import EASE

    name, load = datasets(args.quick)[0]
    train, test = load()
    model = EASE(l2=500.0).fit(train, show_progress=False, distributed=False)
    comm.barrier()
    t0 = time.perf_counter()
    res = ranking_metrics(model, train, test, k=(10, 20), distributed=True)
    return [{"dataset": name, "seconds": time.perf_counter() - t0, "ndcg@10": res["ndcg@10"],
             "result": digest(np.array(list(res.values())))}]


def row_ease(comm, args):
    from recfb.evaluation import ranking_metrics
    from recfb.models import EASE

    out = []
    for name, load in datasets(args.quick):
        train, test = load()
        comm.barrier()
        t0 = time.perf_counter()
        model = EASE(l2=500.0, method="sparse", max_neighbors=128).fit(train, show_progress=False, distributed=True)
        fit_s = time.perf_counter() - t0
        res = ranking_metrics(model, train, test, k=10, distributed=True)
        W = model.weights_
        out.append({"dataset": name, "seconds": fit_s, "ndcg@10": res["ndcg@10"],
                    "result": digest(W.indptr, W.indices, W.data), "stages": model.timings_})
    return out


def row_data(comm, args):
    from recfb.data.interactions import Interactions

    folder = Path(args.out) / "log"
    comm.barrier()
    before = peak_rss_mib()
    t0 = time.perf_counter()
    part = Interactions.from_parquet(folder, rank=comm.rank, world_size=comm.world_size)
    return [{"dataset": "synthetic parquet", "seconds": time.perf_counter() - t0, "rows": len(part),
             "users": part.n_users, "items": part.n_items, "rss_before_mib": before}]


def row_train(comm, args):
    import inspect

    from recfb.evaluation import ranking_metrics
    from recfb.models import BPR, MF

    out = []
    for name, load in datasets(args.quick):
        train, test = load()
        for label, cls, params in (("BPR()", BPR, {}), ("BPR(optimizer='adam')", BPR, {"optimizer": "adam"}),
                                   ("MF(loss='bce')", MF, {"loss": "bce"}),
                                   ("MF(loss='bce', optimizer='adam')", MF, {"loss": "bce", "optimizer": "adam"})):
            model = cls(iterations=args.epochs, random_state=0, **params)
            if "distributed" not in inspect.signature(model.fit).parameters:
                out.append({"dataset": name, "model": label, "skipped": "fit() does not take distributed= yet"})
                continue
            comm.barrier()
            t0 = time.perf_counter()
            model.fit(train, show_progress=False, distributed=True)
            fit_s = time.perf_counter() - t0
            res = ranking_metrics(model, train, test, k=10, distributed=True)
            out.append({"dataset": name, "model": label, "seconds": fit_s, "epochs": args.epochs,
                        "examples": int(train.nnz), "ndcg@10": res["ndcg@10"],
                        "result": digest(model.item_factors)})
    return out


def row_simulate(comm, args):
    import inspect

    from recfb.distributed import synthetic_shard
    from recfb.models import BPR

    spec = dict(SIM)
    if args.quick:
        spec.update(n_users=100_000, n_items=20_000, n_interactions=10_000_000)
    before = peak_rss_mib()
    t0 = time.perf_counter()
    X = synthetic_shard(**spec, rank=comm.rank, world_size=comm.world_size)
    out = {"dataset": f"synthetic {spec['n_users']:,} x {spec['n_items']:,}", "generate_s": time.perf_counter() - t0,
           "rows": int(X.nnz), "rss_before_mib": before, "rss_after_generate_mib": peak_rss_mib()}
    params = inspect.signature(BPR.fit).parameters
    comm.barrier()
    t0 = time.perf_counter()
    if "sharded_input" in params:  # fit trains on each rank's own rows
        BPR(iterations=1, random_state=0).fit(X, show_progress=False, distributed=True, sharded_input=True)
        out["trainer"] = "BPR.fit(sharded_input=True)"
    else:  # fit needs the same X on every rank: the loop's own recipe, written out here
        out.update(simulated_bpr_epoch(comm, X, args))
        out["trainer"] = "benchmark's BPR epoch (Comm.equalize + dense all_reduce_mean_, as the loop)"
    out["seconds"] = time.perf_counter() - t0
    out["epochs"], out["examples"] = 1, int(comm.all_reduce_array(np.array([X.nnz], np.int64))[0])
    return [out]


def simulated_bpr_epoch(comm, X, args, factors=64, lr=0.05):
    """One BPR epoch on this rank's rows, synchronised as recfb's loop does it (identical
    initial weights, the same number of steps on every rank, dense gradients averaged by
    ``Comm.all_reduce_mean_``, one SGD step), for logs that no rank holds whole."""
    import torch

    torch.manual_seed(0)  # the same initial weights on every rank
    users = torch.nn.Embedding(X.shape[0], factors)
    items = torch.nn.Embedding(X.shape[1], factors)
    for e in (users, items):
        torch.nn.init.normal_(e.weight, std=0.1)
    opt = torch.optim.SGD([users.weight, items.weight], lr=lr)
    row = torch.from_numpy(np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr)))
    col = torch.from_numpy(X.indices.astype(np.int64))
    rng = np.random.default_rng([0, comm.rank])
    order = torch.from_numpy(comm.equalize(rng.permutation(X.nnz)))
    gen = torch.Generator().manual_seed(1 + comm.rank)
    steps, losses, sync_s = 0, [], 0.0
    for start in range(0, order.numel(), args.sim_batch):
        if args.sim_steps and steps >= args.sim_steps:
            break
        idx = order[start:start + args.sim_batch]
        u, i = row[idx], col[idx]
        j = torch.randint(0, X.shape[1], (idx.numel(),), generator=gen)
        pu = users(u)
        loss = -torch.nn.functional.logsigmoid((pu * items(i)).sum(1) - (pu * items(j)).sum(1)).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        t0 = time.perf_counter()
        comm.all_reduce_mean_([users.weight.grad, items.weight.grad])
        sync_s += time.perf_counter() - t0
        opt.step()
        steps += 1
        losses.append(float(loss))
    total_steps = -(-order.numel() // args.sim_batch)
    return {"steps": steps, "steps_per_epoch": total_steps, "batch": args.sim_batch, "sync_s": sync_s, "first_loss": losses[0],
            "last_loss": losses[-1], "weights": digest(items.weight.detach().numpy()[:1000])}


ROWS = {"eval": row_eval, "ease": row_ease, "data": row_data, "train": row_train, "simulate": row_simulate}


def worker(args):
    import torch

    torch.set_num_threads(args.threads)
    from recfb.distributed import get_comm

    comm = get_comm(True)
    results = ROWS[args.worker](comm, args)
    for r in results:
        r.update(rank=comm.rank, world_size=comm.world_size, peak_rss_mib=peak_rss_mib())
    with open(Path(args.out) / f"{args.worker}.{comm.world_size}.rank{comm.rank}.json", "w") as fh:
        json.dump(results, fh)
    comm.close()


# ---------------------------------------------------------------------- driver
def launch(row, ranks, args, out):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
           __file__, "--worker", row, "--out", str(out), "--threads", str(args.threads), "--epochs", str(args.epochs)]
    cmd += ["--sim-batch", str(args.sim_batch), "--sim-steps", str(args.sim_steps)]
    if args.quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{row} at {ranks} ranks failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    per_rank = []
    for r in range(ranks):
        with open(out / f"{row}.{ranks}.rank{r}.json") as fh:
            per_rank.append(json.load(fh))
    return per_rank, time.perf_counter() - t0


def write_synthetic_parquet(folder, spec):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recfb.distributed import synthetic_shard

    X = synthetic_shard(**spec).tocoo()
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"user": X.row.astype(np.int64), "item": X.col.astype(np.int64)})
    pq.write_table(table, folder / "part-0.parquet", row_group_size=-(-X.nnz // 16))


def report_rows(row, runs):
    """Markdown lines for one row: one line per (dataset[, model]) and world size."""
    lines = []
    one = runs[min(runs)][0][0]  # rank 0 of the smallest world: the baseline
    for j, base in enumerate(one):
        label = base["dataset"] + (f", {base['model']}" if "model" in base else "")
        for R in sorted(runs):
            rs = [rank[j] for rank in runs[R][0]]
            r0 = rs[0]
            rss = "/".join(f"{x['peak_rss_mib']:.0f}" for x in rs)
            if "rss_before_mib" in r0:  # what the rows added to the process after its imports
                rss += " (+" + "/".join(f"{x['peak_rss_mib'] - x['rss_before_mib']:.0f}" for x in rs) + ")"
            if "skipped" in r0:
                lines.append(f"| {row} | {label} | {R} | skipped: {r0['skipped']} | | | rss {rss} MiB |")
                continue
            secs = max(x.get("seconds", x.get("generate_s", 0.0)) for x in rs)
            cells = [f"{secs:.2f} s"]
            if "ndcg@10" in r0:
                cells.append(f"NDCG@10 {r0['ndcg@10']:.4f}")
            if "result" in r0 and "examples" in r0:  # training: other batches, so compare the ranks
                same = len({x["result"] for x in rs}) == 1
                cells.append("identical weights on every rank" if same else "RANKS DIFFER")
            elif "result" in r0:
                same = all(x["result"] == base["result"] for x in rs)
                cells.append("= 1 process" if same else "DIFFERS from 1 process")
            if "examples" in r0 and "ndcg@10" in r0:
                per_rank = r0["examples"] * r0["epochs"] / R / secs
                one_s = base["seconds"]
                eff = (r0["examples"] * r0["epochs"] / secs) / (R * r0["examples"] * r0["epochs"] / one_s)
                ratio = r0["ndcg@10"] / base["ndcg@10"]
                cells.append(f"{per_rank:,.0f} ex/s/rank, efficiency {eff:.2f}, NDCG ratio {ratio:.3f}")
            if "rows" in r0:
                cells.append("rows/rank " + "/".join(f"{x['rows']:,}" for x in rs))
            if "generate_s" in r0:
                cells.append(f"generate {max(x['generate_s'] for x in rs):.1f} s")
            if "steps" in r0:
                same = len({x["weights"] for x in rs}) == 1
                cells.append(f"{r0['steps'] * r0['batch'] / secs:,.0f} ex/s/rank, "
                             f"{r0['steps']}/{r0['steps_per_epoch']} steps, all-reduce "
                             f"{max(x['sync_s'] for x in rs):.1f} s, loss {r0['first_loss']:.3f} -> "
                             f"{r0['last_loss']:.3f}, {'identical' if same else 'DIFFERENT'} weights on every rank")
            lines.append(f"| {row} | {label} | {R} | " + " | ".join(cells) + f" | rss {rss} MiB |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="eval,ease,data", help=f"comma-separated, from {sorted(ROWS)}")
    p.add_argument("--ranks", type=int, default=2, help="world size compared with 1 process (simulate: 4)")
    p.add_argument("--threads", type=int, default=1, help="threads per rank")
    p.add_argument("--epochs", type=int, default=5, help="train rows: epochs, equal at every world size")
    p.add_argument("--sim-batch", type=int, default=262_144, help="simulate: examples per rank per step")
    p.add_argument("--sim-steps", type=int, default=0, help="simulate: stop after this many steps (0: the epoch)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", type=Path)
    p.add_argument("--worker", choices=sorted(ROWS), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    import torch

    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; choose from {sorted(ROWS)}")
    lines = ["| row | data | ranks | time | | | peak RSS per rank |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if "data" in rows:
            write_synthetic_parquet(out / "log", QUICK_SYNTH if args.quick else SYNTH)
        for row in rows:
            worlds = [4] if row == "simulate" else [1, args.ranks]
            runs = {R: launch(row, R, args, out) for R in worlds}  # simulate: no 1-process run (what it avoids)
            for line in report_rows(row, runs):
                print(line, flush=True)
                lines.append(line)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    head = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load} at the end; "
            f"torch {torch.__version__}; "
            f"{args.threads} thread(s) per rank; command: `{' '.join(['benchmarks/distributed.py'] + (argv or sys.argv[1:]))}`")
    from _report import emit
    emit([head, ""] + lines, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
