"""The sweep that chose recfb's defaults: every model on several datasets of different shape,
selected on a validation split (never on test).

    .venv/bin/python benchmarks/defaults.py                       # every family, every dataset
    .venv/bin/python benchmarks/defaults.py --families bpr bce --datasets ml-100k lastfm-2k
    .venv/bin/python benchmarks/defaults.py --quick               # smoke: tiny grids, ml-100k
    add --output benchmarks/defaults_results.md to keep the report

Protocol: per-user random split 70 / 10 / 20 (``random_holdout(test_fraction=0.2,
validation_fraction=0.1, seed=0)``); every grid point is fitted on the 70% part and scored by
NDCG@10 on the 10% part; the 20% test part is not read. For each family and dataset the report
lists the grid's winner, the library default's own validation NDCG@10 (the model built with no
arguments, as a user writes it), the default's ratio to the winner, and MostPopular beside it.
A default is robust when that ratio stays high on every dataset; where the winner moved with
the data (epochs with size, L2 with density), the model derives the value from the data at fit
time instead (see each model's docstring). The figures and the reasoning are in RESULTS.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
from _defaults_noisy import SPECIAL
from _report import emit, shared_data_dir
from defaults_sequential import FAMILY as SEQUENTIAL

import recfb
from recfb.data import split
from recfb.evaluation import ranking_metrics
from recfb.models import BPR, CML, EASE, MF, ItemKNN, LightGCN, MostPopular

warnings.filterwarnings("ignore", category=RuntimeWarning, module="implicit")

DATASETS = ("ml-100k", "lastfm-2k", "ml-1m")
DERIVED = ("optimizer", "iterations", "learning_rate", "regularization", "num_negatives", "lr_schedule", "batch_size")
SPECIAL = {**SPECIAL, "sequential": SEQUENTIAL}  # SASRec, gSASRec, BERT4Rec: leave-one-out on sequences

# family -> (constructor, grid of explicit settings). The grids bracket the chosen defaults.
FAMILIES = {
    "bpr": (BPR, {"learning_rate": [0.02, 0.05, 0.1], "regularization": [0.003, 0.01, 0.03],
                  "iterations": [50, 100, 200]}),
    "bce": (lambda **p: MF(loss="bce", **p), {"learning_rate": [0.05, 0.1], "regularization": [0.01, 0.03, 0.045, 0.06],
                                              "iterations": [100, 200], "num_negatives": [4]}),
    "cml": (CML, {"learning_rate": [0.01, 0.02, 0.05, 0.1], "margin": [0.5, 1.0]}),
    "lightgcn": (LightGCN, {"learning_rate": [0.005, 0.01, 0.03], "regularization": [1e-4, 1e-3],
                            "batch_size": [8192, 16384, 65536]}),
    "ease": (EASE, {"l2": [25.0, 50.0, 100.0, 200.0, 350.0, 500.0, 750.0, 1000.0, 1500.0, 2500.0, 4000.0]}),
    "itemknn": (ItemKNN, {"neighbors": [25, 50, 100, 200, 400], "shrink": [0.0, 10.0, 50.0]}),
}
QUICK = {
    "bpr": {"learning_rate": [0.05], "iterations": [20]},
    "bce": {"num_negatives": [1, 4], "iterations": [10]},
    "cml": {"iterations": [3]},
    "lightgcn": {"iterations": [3]},
    "ease": {"l2": [100.0, 500.0]},
    "itemknn": {"neighbors": [50, 200]},
}


def load_split(name):
    """Train and validation CSR, binarised as in benchmarks/leaderboard.py (lastfm-2k stores play
    counts: EASE and ItemKNN would weight by them, the embedding models ignore values)."""
    ds = recfb.datasets.load(name, data_dir=shared_data_dir())
    train, valid, _test = split.random_holdout(ds, test_fraction=0.2, validation_fraction=0.1, seed=0)
    return tuple(part.matrix.astype(np.float32).sign() for part in (train, valid))


def score(make, train, valid):
    t0 = time.perf_counter()
    model = make().fit(train, show_progress=False)
    seconds = time.perf_counter() - t0
    return ranking_metrics(model, train, valid, k=10)["ndcg@10"], seconds, model


def grid_points(grid):
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


def sweep(family, datasets, quick, quiet):
    ctor, grid = FAMILIES[family]
    if quick:
        grid = QUICK[family]
    rows = []
    for name in datasets:
        train, valid = load_split(name)
        pop, _, _ = score(MostPopular, train, valid)
        default, default_s, model = score(ctor, train, valid)
        derived = {k: getattr(model, k + "_") for k in DERIVED if hasattr(model, k + "_")}
        results = []
        for params in grid_points(grid):
            ndcg, seconds, _ = score(lambda p=params: ctor(**p), train, valid)
            results.append((ndcg, seconds, params))
            if not quiet:
                print(json.dumps({"family": family, "dataset": name, "params": params, "ndcg@10": round(ndcg, 4),
                                  "fit_s": round(seconds, 1)}), flush=True)
        best = max(results, key=lambda r: r[0])
        rows.append({"dataset": name, "shape": f"{train.shape[0]} x {train.shape[1]}, {train.nnz} nnz",
                     "pop": pop, "default": default, "default_s": default_s, "derived": derived,
                     "best": best[0], "best_s": best[1], "best_params": best[2],
                     "all": sorted(results, key=lambda r: -r[0])})
        if not quiet:
            print(json.dumps({"family": family, "dataset": name, "default": round(default, 4),
                              "derived": {k: str(v) for k, v in derived.items()},
                              "best": round(best[0], 4), "best_params": best[2]}), flush=True)
    return rows


def report(results, args):
    import numba
    import torch
    lines = ["## Defaults sweep (validation NDCG@10, 70/10/20 per-user random split, seed 0)", "",
             f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/defaults.py'] + sys.argv[1:])}`  ",
             f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
             f"recfb {recfb.__version__}; {os.cpu_count()} cores", ""]
    for family, rows in results.items():
        if family in SPECIAL:  # the unbiased objectives and the denoisers: their own protocols and tables
            lines += SPECIAL[family].report(rows, args.quick)
            continue
        _, grid = FAMILIES[family]
        lines += [f"### {family}: grid {json.dumps(QUICK[family] if args.quick else grid)}", "",
                  "| dataset | shape | MostPopular | grid winner | winner NDCG@10 (fit s) | default NDCG@10 (fit s) "
                  "| default / winner | default derived |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            derived = ", ".join(f"{k}={v}" for k, v in r["derived"].items()) or "-"
            lines.append(f"| {r['dataset']} | {r['shape']} | {r['pop']:.4f} | {json.dumps(r['best_params'])} | "
                         f"{r['best']:.4f} ({r['best_s']:.1f}) | {r['default']:.4f} ({r['default_s']:.1f}) | "
                         f"{r['default'] / r['best']:.3f} | {derived} |")
        lines.append("")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES) + list(SPECIAL),
                    choices=list(FAMILIES) + list(SPECIAL))
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    datasets = args.datasets or (["ml-100k"] if args.quick else list(DATASETS))
    results = {f: SPECIAL[f].sweep(SPECIAL[f].pick(args.datasets, args.quick), args.quick, args.quiet)
               if f in SPECIAL else sweep(f, datasets, args.quick, args.quiet) for f in args.families}
    emit(report(results, args), args.output)


if __name__ == "__main__":
    main()
