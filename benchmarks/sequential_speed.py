"""SASRec training speed (s/epoch, positions/s), optionally against another checkout of recfb in
the same run, interleaved, so that a refactoring can show it did not slow training down.

    RECFB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/sequential_speed.py
    # before/after: a copy of the old code (e.g. `git archive <rev> recfb | tar -x -C /tmp/old`)
    RECFB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/sequential_speed.py --baseline /tmp/old

The settings are those of the SASRec-BCE reproduction run in benchmarks/RESULTS.md (Video,
leave-one-out train part, 50 factors, max_len 50, 2 blocks, 1 head, batch 128, dropout 0.5,
lr 1e-3, one negative outside the history), trained for ``--epochs`` epochs without
validation. Each round runs every code tree once, in a fresh process, in alternating order;
the first epoch of each run is a warm-up and not counted. Reported: the median over rounds of
each run's median epoch time, and the ratio of this checkout to the baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, warnings, torch
torch.set_num_threads(int(sys.argv[2]))
from recfb.data.split import leave_one_out
from recfb.datasets import load
from recfb.models import SASRec
import recfb
assert recfb.__file__.startswith(sys.argv[1]), (recfb.__file__, sys.argv[1])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    data = load(sys.argv[4], quiet=True)
train, _, _ = leave_one_out(data, by="row")
m = SASRec(loss="bce", num_negatives=1, factors=50, max_len=50, num_blocks=2, num_heads=1, batch_size=128,
           dropout=0.5, learning_rate=1e-3, iterations=int(sys.argv[3]), random_state=0, device="cpu")
m.fit(train, show_progress=False)
print(json.dumps({"seconds": [h["seconds"] for h in m.history_],
                  "positions_per_s": [h["examples_per_s"] for h in m.history_], "loss": m.history_[-1]["loss"]}))
"""


def run_tree(tree: Path, threads: int, epochs: int, dataset: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(threads), str(epochs), dataset], env=env,
                         capture_output=True, text=True, cwd="/")
    if out.returncode:
        raise RuntimeError(f"the run in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="folder holding another recfb package to compare with")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is a warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", default="video")
    args = parser.parse_args(argv)
    trees = {"this checkout": ROOT}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    print(json.dumps({"load_before": os.getloadavg(), "threads": args.threads, "epochs": args.epochs,
                      "dataset": args.dataset}), flush=True)
    runs = {name: [] for name in trees}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for name, tree in order:
            res = run_tree(tree, args.threads, args.epochs, args.dataset)
            runs[name].append(res)
            print(json.dumps({"round": r, "tree": name, **res}), flush=True)
    summary = {}
    for name, rs in runs.items():
        ep = float(np.median([np.median(x["seconds"][1:] or x["seconds"]) for x in rs]))
        pps = float(np.median([np.median(x["positions_per_s"][1:] or x["positions_per_s"]) for x in rs]))
        summary[name] = {"s_per_epoch": round(ep, 2), "positions_per_s": round(pps), "final_loss": rs[-1]["loss"]}
    if "baseline" in summary:
        summary["ratio (this / baseline), s/epoch"] = round(summary["this checkout"]["s_per_epoch"]
                                                           / summary["baseline"]["s_per_epoch"], 3)
    summary["load_after"] = os.getloadavg()
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
