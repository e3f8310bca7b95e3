"""Embedding models on the shared loop vs implicit, in one run.

    .venv/bin/python benchmarks/embeddings.py speed      # BPR epoch time vs implicit (ML-1M-sized)
    .venv/bin/python benchmarks/embeddings.py quality    # ml-1m pairs: BPR and implicit BPR tuned by recfb.tune, LightGCN, CML
    .venv/bin/python benchmarks/embeddings.py scale      # 100,000 x 20,000, 10M interactions: one epoch, peak RSS
    add --quick for a short smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.sparse as sp
import torch

import recfb
from recfb.data import split
from recfb.evaluation import ranking_metrics
from recfb.models import BPR, CML, ImplicitBPR, LightGCN

warnings.filterwarnings("ignore", category=RuntimeWarning, module="implicit")


def synthetic(n_users, n_items, nnz, seed=0):
    """Power-law item popularity, log-normal user activity, binary."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    activity = rng.lognormal(0, 1, n_users)
    users = rng.choice(n_users, nnz, p=activity / activity.sum())
    items = rng.choice(n_items, nnz, p=pop / pop.sum())
    X = sp.csr_matrix((np.ones(nnz, np.float32), (users, items)), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1
    return X


def versions():
    import implicit
    import numba
    return (f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), numba {numba.__version__} "
            f"({numba.config.NUMBA_NUM_THREADS} threads), implicit {implicit.__version__}, recfb {recfb.__version__}; "
            f"{os.cpu_count()} cores")


def speed(quick):
    X = synthetic(6040, 3706, 1_000_000 if not quick else 200_000)
    print(f"data: synthetic {X.shape[0]} x {X.shape[1]}, {X.nnz} interactions, 64 factors")
    epochs = 2 if quick else 5
    BPR(factors=8, iterations=1, optimizer="fused_sgd", device="cpu").fit(X[:50], show_progress=False)  # compile
    rows = []

    def run(name, make):
        t0 = time.perf_counter()
        m = make().fit(X, show_progress=False)
        total = time.perf_counter() - t0
        per = [h["seconds"] for h in m.history_] if hasattr(m, "history_") else [total / epochs]
        rows.append((name, float(np.median(per))))
        print(f"  {name:<48} {np.median(per):.3f} s/epoch")

    run("implicit BPR (num_threads=0: 2)", lambda: ImplicitBPR(factors=64, iterations=epochs))
    run("implicit BPR (num_threads=1)", lambda: ImplicitBPR(factors=64, iterations=epochs, num_threads=1))
    run("recfb BPR fused_sgd (2 threads)", lambda: BPR(factors=64, iterations=epochs, optimizer="fused_sgd",
                                                       device="cpu"))
    run("recfb BPR fused_sgd (1 thread, deterministic)", lambda: BPR(factors=64, iterations=epochs,
                                                                     optimizer="fused_sgd", num_threads=1, device="cpu"))
    run("recfb BPR adam autograd, batch 8192", lambda: BPR(factors=64, iterations=epochs, device="cpu"))
    run("recfb BPR adam autograd, batch 65536", lambda: BPR(factors=64, iterations=epochs, batch_size=65536,
                                                            device="cpu"))
    ref = rows[0][1]
    print("ratios to implicit BPR (2 threads): " + ", ".join(f"{n}: {t / ref:.2f}" for n, t in rows[1:]))


def quality(quick):
    ds = recfb.datasets.load("ml-1m")
    train_full, test = split.random_holdout(ds, test_fraction=0.2, seed=0)
    train, valid = split.random_holdout(train_full, test_fraction=0.1, seed=1)
    X, V, Xf, T = train.matrix, valid.matrix, train_full.matrix, test.matrix
    for M in (X, V, Xf, T):
        M.data[:] = 1
    print(f"data: ml-1m pairs {ds}; train {X.nnz}, valid {V.nnz}, test {T.nnz} (valid split from train)")
    it = 5 if quick else None

    def evaluate(model, fit_X):
        r = ranking_metrics(model, fit_X, T, k=(10, 20))
        return r["ndcg@10"], r["ndcg@20"], r["recall@20"]

    def tune(name, space, make, n_trials):
        """recfb.tune.search on the validation split (NDCG@10, seeded TPE, pruned per epoch), then a
        refit on train+valid with the chosen setting (and the best trial's epoch count when the
        model validated every epoch); ``space=None``: one setting, nothing to tune."""
        best, epochs_ = {}, {}
        if space is not None:
            t0 = time.perf_counter()
            result = recfb.tune.search(make(), X, V, metric="ndcg@10", n_trials=n_trials, space=space, seed=0,
                                       show_progress=False, refit=False)
            best = result.best_params
            best_epoch = result.study.best_trial.user_attrs.get("best_epoch")
            if best_epoch is not None:
                epochs_ = {"iterations": best_epoch}
            states = [t.state.name for t in result.study.trials]
            print(f"  {name}: {len(states)} trials ({states.count('PRUNED')} pruned), best valid ndcg@10 "
                  f"{result.best_value:.4f} with {best} {epochs_} ({time.perf_counter() - t0:.0f} s)", flush=True)
        t0 = time.perf_counter()
        final = make(**best, **epochs_).fit(Xf, show_progress=False)  # refit on train+valid
        fit_s = time.perf_counter() - t0
        n10, n20, r20 = evaluate(final, Xf)
        print(f"{name:<14} best {best} -> test ndcg@10 {n10:.4f} ndcg@20 {n20:.4f} recall@20 {r20:.4f} "
              f"(fit {fit_s:.0f} s)", flush=True)
        return n10, n20

    # the space of the former 3 x 2 grid (lr 0.01..0.1, reg 0.001..0.01), the same budget of 6 trials
    space_bpr = {"learning_rate": ("float", 0.01, 0.1, "log"), "regularization": ("float", 1e-3, 1e-2, "log")}
    n_trials = 2 if quick else 6
    epochs = it or 60
    res = {}
    res["implicit BPR"] = tune("implicit BPR", space_bpr,
                               lambda **p: ImplicitBPR(**{"factors": 64, "iterations": epochs, **p}), n_trials)
    res["recfb BPR"] = tune("recfb BPR", space_bpr,
                            lambda **p: BPR(**{"factors": 64, "iterations": epochs, "optimizer": "fused_sgd",
                                               "device": "cpu", **p}), n_trials)
    # LightGCN costs ~17 min per fit here (full-graph propagation per step on 2 busy cores), so it
    # gets one setting, the best of a first run's validation (lr 0.01, reg 1e-4: valid ndcg@10 0.1487)
    res["LightGCN"] = tune("LightGCN", None,
                           lambda **p: LightGCN(factors=64, num_layers=3, iterations=it or 40, batch_size=16384,
                                                device="cpu", learning_rate=0.01, regularization=1e-4), 0)
    res["CML"] = tune("CML", None,
                      lambda **p: CML(factors=64, iterations=it or 40, batch_size=16384, num_negatives=10, device="cpu",
                                      learning_rate=0.005, margin=0.5), 0)
    print("summary (test ndcg@10, ndcg@20): " + json.dumps({k: [round(a, 4), round(b, 4)] for k, (a, b) in res.items()}))


def scale(quick):
    code = f"""
import time, resource, numpy as np, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from embeddings import synthetic
from recfb.models import BPR
X = synthetic({20_000 if quick else 100_000}, {4_000 if quick else 20_000}, {1_000_000 if quick else 10_000_000}, seed=1)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
m = BPR(factors=64, iterations=1, optimizer=sys.argv[1], batch_size=65536, device="cpu").fit(X, show_progress=False)
print(f"{{X.shape[0]}} x {{X.shape[1]}}, {{X.nnz}} interactions, optimizer={{sys.argv[1]}}: epoch "
      f"{{m.history_[0]['seconds']:.1f}} s, peak RSS {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f}} GiB "
      f"(data+setup {{rss0 / 2**20:.2f}} GiB)")
"""
    for opt in os.environ.get("RECFB_BENCH_OPTIMIZERS", "fused_sgd,adam").split(","):
        subprocess.run([sys.executable, "-c", code, opt], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", help="speed, quality, scale (default: all)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    print(versions())
    for what in args.what or ["speed", "quality", "scale"]:
        if what not in ("speed", "quality", "scale"):
            p.error(f"unknown section {what!r}")
        print(f"\n== {what} ==", flush=True)
        {"speed": speed, "quality": quality, "scale": scale}[what](args.quick)
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
