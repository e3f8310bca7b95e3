"""recfb.evaluation.ranking_metrics vs implicit.evaluation.ranking_metrics_at_k.

Same implicit ALS model, same ML-1M-sized split, same run; best of 3 wall times, ratio
recfb / implicit, and the two ndcg@10 / map@10 (which must agree).

    .venv/bin/python benchmarks/evaluation.py
"""
from __future__ import annotations

import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

import recfb
from recfb.evaluation import ranking_metrics
from recfb.models import ImplicitALS

N_USERS, N_ITEMS, TARGET_NNZ = 6040, 3706, 1_000_209


def load_data():
    """ML-1M through recfb.datasets when that module exists and finds the data, else a seeded
    synthetic matrix of the same size: popularity-skewed items, heavy-tailed user activity,
    20 user clusters with their own taste (so ALS learns something)."""
    try:
        from recfb.datasets import load

        shared = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
        data_dir = None if os.environ.get("RECFB_DATA_DIR") or not shared.is_dir() else shared
        ds = load("ml-1m", data_dir=data_dir)
        X = sp.csr_matrix(ds.matrix, dtype=np.float32)
        X.data[:] = 1.0
        return X, "MovieLens 1M (recfb.datasets.load('ml-1m'))"
    except Exception as exc:  # noqa: BLE001 - any failure means: use the synthetic stand-in
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    rng = np.random.default_rng(0)
    item_pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.9
    n_clusters = 20
    taste = np.stack([rng.permutation(item_pop) for _ in range(n_clusters)])
    probs = 0.5 * item_pop / item_pop.sum() + 0.5 * taste / taste.sum(axis=1, keepdims=True)
    activity = rng.lognormal(0.0, 1.0, N_USERS)
    cluster = rng.integers(n_clusters, size=N_USERS)
    draws = rng.multinomial(int(TARGET_NNZ * 1.42), activity / activity.sum())
    users = np.repeat(np.arange(N_USERS), draws)
    items = np.empty(users.size, np.int64)
    for c in range(n_clusters):  # one vectorised draw per cluster
        mask = cluster[users] == c
        items[mask] = rng.choice(N_ITEMS, size=int(mask.sum()), p=probs[c])
    X = sp.csr_matrix((np.ones(users.size, np.float32), (users, items)), shape=(N_USERS, N_ITEMS))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X, f"synthetic {N_USERS} x {N_ITEMS}, seed 0 (ml-1m not used: {reason})"


def split_per_user(X: sp.csr_matrix, test_fraction=0.2, seed=0):
    """Random 80/20 per user through recfb's own split (round(0.2 * n_u) of each user's rows)."""
    from recfb.data import Interactions, split
    train, test = split.random_holdout(Interactions.from_matrix(X), test_fraction=test_fraction, seed=seed)
    return train.matrix, test.matrix


def best_of_interleaved(fns, repeat=3):
    """Best wall time of each function over ``repeat`` rounds, alternating them within a round
    so that machine noise hits both alike."""
    times = [[] for _ in fns]
    outs = [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return [min(t) for t in times], outs


def main():
    import implicit
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k
    from threadpoolctl import threadpool_info, threadpool_limits

    X, source = load_data()
    train, test = split_per_user(X)
    print(f"data: {source}; {X.shape[0]} x {X.shape[1]}, {X.nnz} interactions "
          f"(train {train.nnz}, test {test.nnz})")
    print(f"versions: numpy {np.__version__}, scipy {scipy.__version__}, implicit {implicit.__version__}, "
          f"recfb {recfb.__version__}, python {platform.python_version()}")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}")
    for pool in threadpool_info():
        print(f"threads: {pool['internal_api']} {pool.get('version')} ({os.path.basename(pool['filepath'])}) "
              f"num_threads={pool['num_threads']}")

    with warnings.catch_warnings():  # implicit's advice to limit OpenBLAS: done for fit below
        warnings.simplefilter("ignore", RuntimeWarning)
        model = AlternatingLeastSquares(factors=64, iterations=5, random_state=0)
    with threadpool_limits(1, "blas"):
        t0 = time.perf_counter()
        model.fit(train, show_progress=False)
        print(f"ALS fit (BLAS 1 thread, implicit num_threads={model.num_threads}): "
              f"{time.perf_counter() - t0:.2f} s")

    users = np.flatnonzero(np.diff(test.indptr)).astype(np.int32)
    step = 64 * 2**20 // (4 * train.shape[1])  # ranking_metrics' default batch

    def recommend_only():  # the model's share of ranking_metrics: same calls, no metrics
        for start in range(0, users.size, step):
            batch = users[start:start + step]
            model.recommend(batch, train[batch], N=10)

    # the same factors behind recfb's own contract (recfb's blocked recommend)
    wrapped = ImplicitALS(factors=64, iterations=5)
    wrapped.user_factors, wrapped.item_factors = model.user_factors, model.item_factors
    wrapped.n_users_, wrapped.n_items_ = train.shape

    (t_imp, t_rec, t_recommend, t_wrapped), (imp, rec, _, rec_w) = best_of_interleaved([
        lambda: ranking_metrics_at_k(model, train, test, K=10, show_progress=False),
        lambda: ranking_metrics(model, train, test, k=10),
        recommend_only,
        lambda: ranking_metrics(wrapped, train, test, k=10),
    ])
    print(f"implicit ranking_metrics_at_k(K=10): {t_imp:.3f} s (best of 3)")
    print(f"recfb    ranking_metrics(k=10):      {t_rec:.3f} s (best of 3)")
    print(f"ratio recfb / implicit: {t_rec / t_imp:.2f}")
    print(f"of which model.recommend alone (same batches): {t_recommend:.3f} s")
    print(f"recfb    ranking_metrics on recfb.models.ImplicitALS (same factors, recfb recommend): "
          f"{t_wrapped:.3f} s, ratio to implicit {t_wrapped / t_imp:.2f}, ndcg@10 {rec_w['ndcg@10']:.6f}")
    print(f"ndcg@10: implicit {imp['ndcg']:.6f}  recfb {rec['ndcg@10']:.6f}")
    print(f"map@10:  implicit {imp['map']:.6f}  recfb {rec['map@10']:.6f}")
    print(f"recfb users evaluated {rec.n_users}, skipped {rec.n_skipped}; all metrics: {dict(rec)}")
    agree = np.isclose(imp["ndcg"], rec["ndcg@10"], rtol=1e-9) and np.isclose(imp["map"], rec["map@10"], rtol=1e-9)
    print(f"ndcg/map agree: {agree}")
    if not agree:
        raise SystemExit("recfb and implicit disagree on ndcg@10/map@10")


if __name__ == "__main__":
    main()
