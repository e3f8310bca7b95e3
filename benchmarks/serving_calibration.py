"""ANN indices calibrated to a recall target, against exact search in the same run.

    python benchmarks/serving_calibration.py                  # ALS-like 200,000 items + ML-1M metrics
    python benchmarks/serving_calibration.py --million        # also the 1M-item clustered set

Sections (k=10, 1 search thread for every QPS figure):

1. ALS-like vectors: implicit ALS (64 factors) on ML-1M, its 3,706 item factors copied to
   200,000 items with 10 % multiplicative noise (``f * (1 + 0.1 N(0, 1))`` per entry); the
   6,040 user factors are the queries. ``ItemIndex.from_vectors(kind="hnsw" | "ivf",
   target_recall=0.95, queries=<2,000 users>)`` calibrates on 1,000 of them and measures on
   the other 1,000 (stored); this script reports recall@10 on the **4,040 users calibration
   never saw**, by brute force, and QPS against the exact index on the same queries. HNSW at
   the defaults (efSearch 64) is the reference row.
2. ``ranking_metrics(model, train, test, index=...)`` on ML-1M (80/20 random holdout): exact
   vs HNSW at defaults vs calibrated, so the cost of the approximation is in NDCG terms.
3. (--million) the 1,000,000-item sets of benchmarks/serving.py (``clustered``, and ``als``:
   ML-1M ALS factors with additive noise, 0.5 x the vector's RMS): exact, HNSW at the
   defaults and calibrated, with build time and index size.
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import torch  # noqa: E402

from recfb.serving import ItemIndex  # noqa: E402

K = 10


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def threads(n):
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def index_mb(idx):
    if idx._faiss is None:
        return float("nan")
    buf = faiss.serialize_index(idx._faiss)
    return buf.size / 2**20


def recall(found, truth):
    return float(np.mean([len(set(a[a >= 0].tolist()) & set(b.tolist())) / truth.shape[1]
                          for a, b in zip(found, truth)]))


def qps(idx, Q, repeats=2):
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        ids, _ = idx.search(Q, K)
        best = max(best, len(Q) / (time.perf_counter() - t0))
    return ids, best


def section(name, X, cal_q, held_q, out, build_threads, target, kinds=("hnsw", "ivf")):
    out.append(f"## {name}: {X.shape[0]:,} items x {X.shape[1]}, calibration on {len(cal_q):,} queries "
               f"(half choose, half measure), recall on {len(held_q):,} unseen queries\n")
    threads(1)
    exact = ItemIndex.from_vectors(X, kind="exact", device="cpu")
    truth, exact_qps = qps(exact, held_q)
    out.append("| index | setting | recall@10 (unseen queries) | stored held-out recall | QPS (1 thread) | "
               "x exact | build + calibration s | index MiB |")
    out.append("|---|---|---|---|---|---|---|---|")
    out.append(f"| exact | - | 1.000 | - | {exact_qps:,.0f} | 1.0 | - | {X.nbytes / 2**20:,.0f} |")
    rows = [("hnsw defaults", dict(kind="hnsw")),
            (f"hnsw target {target}", dict(kind="hnsw", target_recall=target, queries=cal_q)),
            (f"ivf target {target}", dict(kind="ivf", target_recall=target, queries=cal_q))]
    rows = [r for r in rows if r[1]["kind"] in kinds]
    for label, kw in rows:
        threads(build_threads)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idx = ItemIndex.from_vectors(X, device="cpu", **kw)
        build_s = time.perf_counter() - t0
        threads(1)
        ids, q = qps(idx, held_q)
        r = recall(ids, truth)
        cal = idx.calibration or {}
        setting = {k: idx.params[k] for k in ("M", "efConstruction", "efSearch", "nlist", "nprobe") if k in idx.params}
        note = " (target not met)" if cal and not cal.get("target_met") else ""
        out.append(f"| {label}{note} | {setting} | {r:.4f} | {cal.get('recall', '-')} | {q:,.0f} | "
                   f"{q / exact_qps:.1f} | {build_s:.1f} | {index_mb(idx):,.0f} |")
        for w in caught:
            log(f"  warning: {w.message}")
        log(out[-1])
        if "calibration" in label or cal:
            out.append(f"<!-- {label} tried: {cal.get('history')} -->")
    out.append("")


def als_like(n_items, seed=0, data_dir=None):
    from recfb import datasets
    from recfb.data import split
    from recfb.models import ImplicitALS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = datasets.load("ml-1m", data_dir=data_dir, download=False, quiet=True)
    train, test = split.random_holdout(ds, test_fraction=0.2, seed=seed)
    threads(2)
    model = ImplicitALS(factors=64, iterations=15, regularization=0.05, random_state=seed).fit(train.matrix,
                                                                                                show_progress=False)
    rng = np.random.default_rng(seed)
    F = model.item_factors
    items = F[rng.integers(0, F.shape[0], n_items)]
    items = (items * (1 + 0.1 * rng.standard_normal(items.shape))).astype(np.float32)
    return model, train.matrix, test.matrix, items, np.ascontiguousarray(model.user_factors, dtype=np.float32)


def metrics_section(model, train_X, test_X, out, target):
    from recfb.evaluation import ranking_metrics
    out.append(f"## ranking_metrics through the index: ML-1M ALS (64 factors), 80/20 random holdout, "
               f"{model.item_factors.shape[0]:,} items\n")
    out.append("| ranking | setting | NDCG@10 | recall@10 | coverage@10 | s |")
    out.append("|---|---|---|---|---|---|")
    threads(1)
    cases = [("model.recommend", None),
             ("exact index", ItemIndex.from_model(model, kind="exact", device="cpu")),
             ("hnsw defaults", ItemIndex.from_model(model, kind="hnsw", device="cpu")),
             (f"hnsw target {target}", ItemIndex.from_model(model, kind="hnsw", device="cpu", target_recall=target)),
             ("hnsw efSearch 10, M 4 (poor)", ItemIndex.from_model(model, kind="hnsw", device="cpu", M=4,
                                                                   efSearch=10))]
    for label, idx in cases:
        t0 = time.perf_counter()
        m = ranking_metrics(model, train_X, test_X, k=10, index=idx)
        setting = "-" if idx is None else {k: idx.params[k] for k in ("M", "efSearch") if k in idx.params}
        out.append(f"| {label} | {setting} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['coverage@10']:.4f} | "
                   f"{time.perf_counter() - t0:.1f} |")
        log(out[-1])
    out.append("")
    out.append("Note: rows whose k + seen items exceed 5 % of the catalogue are answered by the exact fallback "
               "(recfb.serving._ann.EXACT_FALLBACK_FRACTION), so on ML-1M most users' lists are exact whatever "
               "the index; the poor row shows what an ANN error costs where it applies.\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--n-calibration", type=int, default=2000)
    p.add_argument("--million", action="store_true", help="also the 1M-item clustered set (slow: HNSW build)")
    p.add_argument("--million-sets", nargs="+", choices=("clustered", "als"), default=["clustered", "als"],
                   help="which 1M sets of benchmarks/serving.py (default both)")
    p.add_argument("--skip-als", action="store_true", help="only the --million section")
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    out = [f"# ANN calibration to recall@10 >= {args.target}\n",
           f"`python benchmarks/serving_calibration.py {' '.join(argv or sys.argv[1:])}` on "
           f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
           f"search 1 thread, build {args.build_threads}; faiss {faiss.__version__}, torch {torch.__version__}\n"]
    if not args.skip_als:
        model, train_X, test_X, items, users = als_like(args.items, data_dir=args.data_dir)
        rng = np.random.default_rng(1)
        order = rng.permutation(users.shape[0])
        cal_q, held_q = users[order[:args.n_calibration]], users[order[args.n_calibration:]]
        section("ALS-like", items, cal_q, held_q, out, args.build_threads, args.target)
        metrics_section(model, train_X, test_X, out, args.target)
    if args.million:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from serving import als_perturbed, clustered
        for name in args.million_sets:
            make = clustered if name == "clustered" else lambda n, nq, seed: als_perturbed(n, nq, seed,
                                                                                           data_dir=args.data_dir)
            X, Q = make(1_000_000, args.n_calibration + 2000, seed=0)
            section(f"{name} 1M (benchmarks/serving.py)", X, Q[:args.n_calibration], Q[args.n_calibration:], out,
                    args.build_threads, args.target, kinds=("hnsw",))
    out.append(f"Peak RSS {peak_rss_mb():,.0f} MiB.\n")
    text = "\n".join(out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
