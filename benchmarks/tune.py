"""recfb.tune against each model's defaults: validation and test NDCG@10 on one split.

    RECFB_DATA_DIR=../shared/datasets nice -n 19 .venv/bin/python benchmarks/tune.py [--trials 30]
        [--models ease itemknn ...] [--dataset ml-100k] [--output benchmarks/tune_results.md]
    add --quick for a smoke run (synthetic world, 3 trials, short training)

Protocol: per-user random 70/10/20 split (seed 0) of the dataset, every interaction a positive.
"defaults" is the model as constructed with no argument (the embedding models validated every
epoch on the validation part, best epoch kept, exactly as inside a trial); "tuned" is
``recfb.tune.search(model, train, valid, metric="ndcg@10", n_trials=N, seed=0)`` with the
model's own ``search_space`` (its first trial is the defaults). Test NDCG@10 / Recall@10 rank
every item with the train and validation items excluded; the test part is never seen while
tuning.

The sequential models (``sasrec``, ``gsasrec``, ``bert4rec``) are tuned under protocol ``"loo"``
on ``split.leave_one_out`` of ``--seq-dataset`` (default Beauty, on the seeded 1,500-user
subsample of benchmarks/defaults_sequential.py, ``--seq-users``; 0: every user): tuned on
the validation item, tested on the test item ranked from the train + validation history (the
history excluded). Their "defaults" are ``Model().fit(train, valid_items=valid)``, exactly a
trial's fit: ``iterations=None`` early-stops on the validation item and keeps the best epoch.
``--timeout S`` stops starting new trials of a model after S seconds.
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

MODELS = ("popular", "itemknn", "ease", "implicit-als", "implicit-bpr", "bpr", "mf", "cml", "lightgcn")


def main(argv=None):
    import optuna
    import torch

    import recfb
    from recfb import tune
    from recfb.cli.main import MODELS as TABLE
    from recfb.cli.main import SEQUENTIAL
    from recfb.data import concatenate, split
    from recfb.datasets import load, make_world
    from recfb.evaluation import ranking_metrics
    from recfb.models._embedding import EmbeddingRecommender

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(TABLE))
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default=None)
    p.add_argument("--seq-dataset", default="beauty", help="leave-one-out data of the sequential models")
    p.add_argument("--seq-users", type=int, default=1500, help="their seeded user subsample (0: all users)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per model after which no trial starts")
    p.add_argument("--storage", default=None, help="sequential models: an Optuna storage (journal file or URL) to "
                   "follow the trials from another process")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("RECFB_BENCH_THREADS", "1")))
    if args.quick:
        data, name, args.trials = make_world(n_users=300, n_items=200, seed=0).clicks, "synthetic (quick)", 3
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, name = load(args.dataset, data_dir=shared_data_dir(), quiet=True), args.dataset
        if not hasattr(data, "matrix"):
            data = data.train
    if all(key in SEQUENTIAL for key in args.models):  # no matrix model: the per-user split is not needed
        data, name = make_world(n_users=50, n_items=40, seed=0).clicks, f"{args.seq_dataset}, leave-one-out"
    train, valid, test = split.random_holdout(data, test_fraction=0.2, validation_fraction=0.1, seed=0)
    X, V, T = (m.matrix.copy() for m in (train, valid, test))
    for M in (X, V, T):
        M.data[:] = 1
    seen = concatenate([train, valid]).matrix
    env = (f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
           f"optuna {optuna.__version__}, recfb {recfb.__version__}, {os.cpu_count()} cores")
    print(env if all(key in SEQUENTIAL for key in args.models) else f"{name}: train {X.nnz}, valid {V.nnz}, test "
          f"{T.nnz}; {env}", flush=True)

    def quick(model):
        if args.quick and "iterations" in model.get_params() and "iterations" not in type(model).search_space:
            model.set_params(iterations=3)
        if "device" in model.get_params():
            model.set_params(device="cpu")
        return model

    rows = []
    for key in args.models:
        cls = TABLE[key]
        if key in SEQUENTIAL:
            rows.append(sequential_row(key, cls, args))
            r = rows[-1]
            print(f"{r['model']:<13} valid {r['default_valid']:.4f} -> {r['tuned_valid']:.4f}  test "
                  f"{r['default_test']:.4f} -> {r['tuned_test']:.4f}  ({r['trials']} trials, {r['pruned']} pruned, "
                  f"{r['tune_s']:.0f} s) {json.dumps(r['best_params'], default=str)}", flush=True)
            continue
        t0 = time.perf_counter()
        default = quick(cls())
        if isinstance(default, EmbeddingRecommender):
            default.fit(X, show_progress=False, valid_items=V)
        else:
            default.fit(X, show_progress=False)
        d_valid = ranking_metrics(default, X, V, k=10)["ndcg@10"]
        d_test = ranking_metrics(default, seen, T, k=10)
        d_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = tune.search(quick(cls()), X, V, metric="ndcg@10", n_trials=args.trials, seed=0, show_progress=False,
                          timeout=args.timeout)
        t_s = time.perf_counter() - t0
        t_test = ranking_metrics(res.best_model, seen, T, k=10)
        states = [t.state.name for t in res.study.trials]
        rows.append({"model": key, "default_valid": d_valid, "tuned_valid": res.best_value,
                     "default_test": d_test["ndcg@10"], "tuned_test": t_test["ndcg@10"],
                     "default_recall": d_test["recall@10"], "tuned_recall": t_test["recall@10"],
                     "trials": len(states), "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
                     "default_s": d_s, "tune_s": t_s, "best_params": res.best_params})
        r = rows[-1]
        print(f"{key:<13} valid {d_valid:.4f} -> {res.best_value:.4f}  test {r['default_test']:.4f} -> "
              f"{r['tuned_test']:.4f}  ({r['trials']} trials, {r['pruned']} pruned, {t_s:.0f} s) "
              f"{json.dumps(res.best_params, default=str)}", flush=True)
    lines = [f"# recfb.tune vs defaults ({name})", "",
             f"Command: `python benchmarks/tune.py {' '.join(sys.argv[1:])}`  ", f"Environment: {env}  ",
             f"Split: per-user random 70/10/20 (seed 0); {args.trials} trials per model, seed 0, NDCG@10 on the "
             "validation part; test with train + validation items excluded.", "",
             "| model | valid NDCG@10 default | valid tuned | test NDCG@10 default | test tuned | test Recall@10 "
             "default | test tuned | trials (pruned) | tuning s | best parameters |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["best_params"].items())
        lines.append(f"| {r['model']} | {r['default_valid']:.4f} | {r['tuned_valid']:.4f} | {r['default_test']:.4f} "
                     f"| {r['tuned_test']:.4f} | {r['default_recall']:.4f} | {r['tuned_recall']:.4f} "
                     f"| {r['trials']} ({r['pruned']}) | {r['tune_s']:.0f} | {params or '(nothing to tune)'} |")
    tunable = [r for r in rows if r["best_params"]]
    behind = [r["model"] for r in tunable if not r["tuned_valid"] > r["default_valid"] + 1e-12]
    lines += ["", f"Tuned beats the defaults on validation for {len(tunable) - len(behind)} of the {len(tunable)} "
              f"models with something to tune{'; not for ' + ', '.join(behind) if behind else ''}.", ""]
    emit(lines, args.output)
    return rows


def sequential_row(key, cls, args):
    """One table row for a sequential model under protocol "loo" (module docstring)."""
    from defaults_sequential import load_split

    from recfb import tune
    from recfb.data import concatenate
    from recfb.evaluation import ranking_metrics

    users = 300 if args.quick else args.seq_users
    train, valid, test = load_split(args.seq_dataset, users or None, with_test=True)
    valid_matrix = valid.with_id_space(train.user_map, train.item_map).matrix
    seen_rows = concatenate([train, valid])  # per user, the validation item after the train items: time order
    seen, test_matrix = seen_rows.matrix, test.with_id_space(train.user_map, train.item_map).matrix
    print(f"{key}: {args.seq_dataset} ({users or 'all'} users) leave-one-out, {train.n_users} x {train.n_items}, "
          f"train {len(train)}, valid {len(valid)}, test {len(test)}", flush=True)

    def make(**params):
        return cls(device="cpu", **({"iterations": 3} if args.quick else {}), **params)

    def scores(model):
        valid_ndcg = ranking_metrics(model, model.history_matrix(), valid_matrix, k=10)["ndcg@10"]
        model.set_histories(seen_rows)
        out = ranking_metrics(model, seen, test_matrix, k=10)
        return valid_ndcg, out

    t0 = time.perf_counter()
    default = make().fit(train, valid_items=valid, show_progress=False)
    d_valid, d_test = scores(default)
    d_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = tune.search(make(), train, valid, metric="ndcg@10", n_trials=args.trials, seed=0, protocol="loo",
                      show_progress=False, timeout=args.timeout, storage=args.storage)
    t_s = time.perf_counter() - t0
    _, t_test = scores(res.best_model)
    states = [t.state.name for t in res.study.trials]
    return {"model": f"{key} ({args.seq_dataset}-{users or 'all'}, loo)", "default_valid": d_valid,
            "tuned_valid": res.best_value, "default_test": d_test["ndcg@10"], "tuned_test": t_test["ndcg@10"],
            "default_recall": d_test["recall@10"], "tuned_recall": t_test["recall@10"], "trials": len(states),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"), "default_s": d_s, "tune_s": t_s,
            "best_params": res.best_params, "default_epoch": default.best_epoch_,
            "tuned_epoch": res.best_model.best_epoch_}


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
