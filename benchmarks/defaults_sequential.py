"""The sweep that chose the sequential models' defaults (SASRec, gSASRec, BERT4Rec), selected on
the leave-one-out validation item, never on test.

    .venv/bin/python benchmarks/defaults_sequential.py                  # the sweep of RESULTS.md
    .venv/bin/python benchmarks/defaults_sequential.py --quick          # smoke test (< 2 min)
    .venv/bin/python benchmarks/defaults_sequential.py --models sasrec --datasets beauty
    .venv/bin/python benchmarks/defaults.py --families sequential       # the same, through defaults.py

Protocol: ``split.leave_one_out`` (each user's last item is test, the second-last validation;
Beauty and Video in file order, which is their time order; ml-100k by timestamp). On the 2-core
CPU a full-size fit of every grid point does not fit the budget, so Beauty and Video are
measured on a fixed, seeded subsample of users (``--users``, default 3,000; ids then compacted)
and ml-100k whole; the same subsample everywhere. Every grid point is fitted on the train part
with the validation item scored every ``--eval-every`` epochs (full ranking over all items,
history excluded, NDCG@10) and a long patience, so that its curve shows where validation
peaks; the point's figure is its best validation NDCG@10 and the epoch of that peak. The
test item is never read.

The defaults themselves are then measured as a user calls them, ``Model()`` with no
arguments and no validation set (``iterations=None``: epochs chosen by early stopping on an
internal holdout, see :class:`recfb.models.SASRec`), and scored on the same validation item.
The report lists per model and dataset the grid's winner, the default's figure and its ratio
to the winner, fit times, and MostPopular beside them. ``--as-defaults`` fits chosen grid points
the same way, as candidate defaults written out by a user (``Model(**point)``, ``iterations=None``,
no validation set), so that a candidate is judged by what its users would get:

    .venv/bin/python benchmarks/defaults_sequential.py --models bert4rec --no-defaults --as-defaults --points 0 6
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
from _report import emit, shared_data_dir

DATASETS = ("beauty", "video", "ml-100k")


def _models():
    from recfb.models import BERT4Rec, SASRec, gSASRec
    return {"sasrec": SASRec, "sasrec-softmax": lambda **p: SASRec(loss="softmax", **p), "gsasrec": gSASRec,
            "bert4rec": BERT4Rec}


# model -> grid points (one-at-a-time around the previous defaults, which are the first point;
# epochs come from each curve's peak)
_SAS = {"factors": 50, "learning_rate": 1e-3, "dropout": 0.2}
_BERT = {"factors": 64, "learning_rate": 1e-3, "dropout": 0.1, "mask_prob": 0.2}
GRIDS = {
    "sasrec": [_SAS, {**_SAS, "learning_rate": 3e-3}, {**_SAS, "dropout": 0.5}],
    "gsasrec": [{**_SAS, "num_negatives": 256}, {**_SAS, "num_negatives": 256, "learning_rate": 3e-3},
                {**_SAS, "num_negatives": 256, "dropout": 0.5}, {**_SAS, "num_negatives": 64}],
    # points 3-5: the sixth session (RESULTS.md, "Sixth session: BERT4Rec's defaults")
    "bert4rec": [_BERT, {**_BERT, "learning_rate": 3e-3}, {**_BERT, "mask_prob": 0.4}, {**_BERT, "mask_prob": 0.6},
                 {**_BERT, "dropout": 0.3}, {**_BERT, "learning_rate": 2e-3},
                 # points 6-8: the per-axis winners combined (mask_prob 0.4 on Video, 0.6 on Beauty; dropout 0.3)
                 {**_BERT, "mask_prob": 0.4, "dropout": 0.3}, {**_BERT, "mask_prob": 0.6, "dropout": 0.3},
                 {**_BERT, "mask_prob": 0.5, "dropout": 0.3, "learning_rate": 2e-3}],
    "sasrec-softmax": [_SAS],
}
QUICK = {m: [{"learning_rate": 3e-3}] for m in GRIDS}
# validations without improvement before a grid point stops: gBCE with 256 of ~10,000 items
# learns slowly at first and a noisy start stopped it early with 3
PATIENCE = {"sasrec": 3, "gsasrec": 8, "bert4rec": 6, "sasrec-softmax": 3}
USERS, EVAL_EVERY, MAX_EPOCHS = 1500, 5, 200


def load_split(name, n_users, seed=0, with_test=False):
    """(train, valid) of leave-one-out on ``name``, on a fixed user subsample when the dataset has
    more than ``n_users`` users (None: all); (train, valid, test) with ``with_test`` (only
    benchmarks/tune.py reads the test part, after tuning)."""
    from recfb.data import split
    from recfb.datasets import load
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load(name, data_dir=shared_data_dir(), quiet=True)
    if n_users and data.n_users > n_users:
        keep = np.sort(np.random.default_rng(seed).choice(data.n_users, n_users, replace=False))
        data = data.subset(np.isin(data.users, keep)).compact()
    train, valid, test = split.leave_one_out(data, by="timestamp" if data.timestamps is not None else "row")
    return (train, valid, test) if with_test else (train, valid)


def valid_ndcg(model, train, valid):
    from recfb.evaluation import ranking_metrics
    V = valid.with_id_space(train.user_map, train.item_map).matrix
    return ranking_metrics(model, model.history_matrix(), V, k=10)["ndcg@10"]


def curve_run(make, params, train, valid, eval_every, patience, max_epochs):
    """Fit ``make(**params)`` with the validation item scored every ``eval_every`` epochs; returns
    the best validation NDCG@10, its epoch, the curve and the seconds of training."""
    model = make(**params, iterations=max_epochs, patience=patience, eval_every=eval_every, device="cpu")
    t0 = time.perf_counter()
    model.fit(train, valid_items=valid, show_progress=False)
    seconds = time.perf_counter() - t0
    curve = [round(h["valid"], 4) for h in model.history_ if "valid" in h]
    return {"ndcg": max(curve), "best_epoch": model.best_epoch_, "epochs": len(model.history_), "fit_s": seconds,
            "s_per_epoch": float(np.median([h["seconds"] for h in model.history_])), "curve": curve}


def default_run(make, train, valid, quick=False, params=None):
    """The default as a user calls it: no arguments, no validation set (``--quick``: patience 1,
    validation every 5 epochs, so that the smoke test stays short). With ``params``, a candidate
    default as a user would write it, ``Model(**params)``, otherwise the same."""
    model = make(device="cpu", **(params or {}), **({"patience": 1, "eval_every": 5} if quick else {}))
    t0 = time.perf_counter()
    model.fit(train, show_progress=False)
    seconds = time.perf_counter() - t0
    selection = getattr(model, "selection_history_", [])  # the holdout run that chose iterations_
    return {"ndcg": valid_ndcg(model, train, valid), "fit_s": seconds, "iterations_": getattr(model, "iterations_", None),
            "epochs": len(model.history_), "selection_epochs": len(selection),
            "holdout_curve": [round(h["valid"], 4) for h in selection if "valid" in h]}


def popularity(train, valid):
    from recfb.evaluation import ranking_metrics
    from recfb.models import MostPopular
    X = train.matrix
    V = valid.with_id_space(train.user_map, train.item_map).matrix
    return ranking_metrics(MostPopular().fit(X), X, V, k=10)["ndcg@10"]


def sweep(models, datasets, *, n_users, eval_every, patience, max_epochs, quick, quiet, defaults=True, points=None,
          as_defaults=False):
    """Run the grid points (and the defaults) and return one record per fit; each is printed as
    a JSON line as it ends, so that a log of several runs can be summarised (``--from-log``).
    ``as_defaults``: fit each chosen point as a candidate default, as a user writes it
    (:func:`default_run` with the point's parameters), instead of its validation curve."""
    makers = _models()
    records = []

    def out(rec):
        records.append(rec)
        if not quiet:
            print(json.dumps(rec), flush=True)
    for name in datasets:
        train, valid = load_split(name, n_users)
        for m in models:
            grid = (QUICK if quick else GRIDS)[m]
            chosen = [] if points == [] else grid if points is None else [grid[i] for i in points if i < len(grid)]
            wait = 1 if quick else patience or PATIENCE[m]
            for params in chosen:
                if as_defaults:
                    out({"model": m, "dataset": name, "candidate": params,
                         "default": default_run(makers[m], train, valid, quick, params)})
                else:
                    out({"model": m, "dataset": name, "params": params, "patience": wait, "eval_every": eval_every,
                         **curve_run(makers[m], params, train, valid, eval_every, wait, max_epochs)})
            if defaults:
                out({"model": m, "dataset": name, "default": default_run(makers[m], train, valid, quick)})
    return records


def report(records, n_users, header, level="##"):
    """Markdown tables: per model and dataset the grid's winner, the default and their ratio."""
    import torch

    import recfb
    sub = level + "#"
    lines = [f"{level} Sequential defaults sweep (validation NDCG@10, leave-one-out, full ranking)", "", *header,
             f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), recfb {recfb.__version__}; {os.cpu_count()} cores; users "
             f"subsampled to {n_users} where larger (seed 0).", ""]
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    info = {}
    for name in datasets:
        train, valid = load_split(name, n_users)
        info[name] = (f"{train.n_users} x {train.n_items}, {len(train)} train rows", popularity(train, valid))
    for m in dict.fromkeys(r["model"] for r in records):
        lines += [f"{sub} {m}", "",
                  "| dataset | shape | MostPopular | grid winner | winner NDCG@10 (peak epoch, fit s) "
                  "| default NDCG@10 (iterations_, fit s) | default / winner |",
                  "|---|---|---|---|---|---|---|"]
        for name in datasets:
            pts = [r for r in records if r["model"] == m and r["dataset"] == name and "params" in r]
            dfl = [r["default"] for r in records if r["model"] == m and r["dataset"] == name and "default" in r
                   and "candidate" not in r]
            if not pts and not dfl:
                continue
            b = max(pts, key=lambda r: r["ndcg"]) if pts else None
            d = dfl[-1] if dfl else None
            bcell = "-" if b is None else f"{b['ndcg']:.4f} ({b['best_epoch']}, {b['fit_s']:.0f})"
            dcell = "-" if d is None else f"{d['ndcg']:.4f} ({d['iterations_']}, {d['fit_s']:.0f})"
            ratio = "-" if b is None or d is None else f"{d['ndcg'] / b['ndcg']:.3f}"
            lines.append(f"| {name} | {info[name][0]} | {info[name][1]:.4f} | "
                         f"{'-' if b is None else json.dumps(b['params'])} | {bcell} | {dcell} | {ratio} |")
        lines += ["", "Every point (best validation NDCG@10 / peak epoch / epochs run / s per epoch; curve every "
                  "``eval_every`` epochs):", ""]
        for r in (r for r in records if r["model"] == m and "params" in r):
            lines.append(f"- {r['dataset']} {json.dumps(r['params'])}: {r['ndcg']:.4f} / {r['best_epoch']} / "
                         f"{r['epochs']} / {r['s_per_epoch']:.2f}; {r['curve']}")
        cands = [r for r in records if r["model"] == m and "candidate" in r]
        if cands:
            lines += ["", "Candidate defaults as a user writes them (``Model(**point)``, ``iterations=None``, no "
                      "validation set; validation NDCG@10 / iterations_ / selection epochs / fit s):", ""]
        for r in cands:
            d = r["default"]
            lines.append(f"- {r['dataset']} {json.dumps(r['candidate'])}: {d['ndcg']:.4f} / {d['iterations_']} / "
                         f"{d['selection_epochs']} / {d['fit_s']:.0f}")
        lines.append("")
    return lines


def read_log(paths):
    records = []
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.startswith("{"):
                    rec = json.loads(line)
                    if "model" in rec and ("params" in rec or "default" in rec or "candidate" in rec):
                        records.append(rec)
    return records


class _Family:
    """``benchmarks/defaults.py --families sequential`` runs this sweep (same interface as the
    families of ``_defaults_noisy.py``)."""

    datasets = DATASETS

    def pick(self, asked, quick):
        own = [d for d in asked or () if d in DATASETS]
        return own or (["beauty"] if quick else list(DATASETS))

    def sweep(self, datasets, quick, quiet):
        users = 300 if quick else USERS
        return sweep(["sasrec", "gsasrec", "bert4rec"], datasets, n_users=users, eval_every=1 if quick else EVAL_EVERY,
                     patience=None, max_epochs=3 if quick else MAX_EPOCHS, quick=quick, quiet=quiet)

    def report(self, rows, quick):
        return report(rows, 300 if quick else USERS, [], level="###")


FAMILY = _Family()


def main(argv=None):
    import torch
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["sasrec", "gsasrec", "bert4rec"], choices=list(GRIDS))
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--users", type=int, default=USERS, help="user subsample of the larger datasets (0: all)")
    ap.add_argument("--eval-every", type=int, default=EVAL_EVERY)
    ap.add_argument("--patience", type=int, default=None, help=f"validations without improvement (default {PATIENCE})")
    ap.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-defaults", action="store_true", help="skip the run of each model at its defaults")
    ap.add_argument("--points", nargs="+", type=int, help="run only these grid points (indices)")
    ap.add_argument("--only-defaults", action="store_true", help="run only each model at its defaults")
    ap.add_argument("--as-defaults", action="store_true",
                    help="fit the chosen points as candidate defaults, as a user writes them (iterations=None, no "
                         "validation set), scored on the validation item, instead of their validation curves")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--output", default=None)
    ap.add_argument("--from-log", nargs="+", help="only summarise the JSON lines of earlier runs' output")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.users, args.max_epochs, args.eval_every = min(args.users or 300, 300), 3, 1
    datasets = args.datasets or (["beauty"] if args.quick else list(DATASETS))
    command = " ".join(["benchmarks/defaults_sequential.py"] + list(sys.argv[1:] if argv is None else argv))
    if args.from_log:
        records = read_log(args.from_log)
    else:
        records = sweep(args.models, datasets, n_users=args.users, eval_every=args.eval_every,
                        patience=args.patience, max_epochs=args.max_epochs, quick=args.quick, quiet=args.quiet,
                        defaults=not args.no_defaults, points=[] if args.only_defaults else args.points,
                        as_defaults=args.as_defaults)
    emit(report(records, args.users, [f"Command: `{command}`  "]), args.output)


if __name__ == "__main__":
    main()
