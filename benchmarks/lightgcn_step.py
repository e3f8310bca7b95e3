"""LightGCN's training step on CPU, old style against new, and ``LightGCN()``'s fit at its
defaults against implicit's ``BayesianPersonalizedRanking()`` in the same run (issue 13).

    .venv/bin/python benchmarks/lightgcn_step.py                       # ml-100k and lastfm-2k, 2 threads
    .venv/bin/python benchmarks/lightgcn_step.py --datasets lastfm-2k --threads 1 --skip-fit

Part 1, one step (``--steps`` timed steps per round, ``--rounds`` interleaved rounds, the median
per style, wall and process CPU time): the same seeded batches (the log's default batch size:
8,192 pairs on ml-100k and lastfm-2k, 65,536 on ml-1m; one uniform negative, BPR + the scorer's
L2, fused Adam) through

- ``layers``: the code before this issue, one ``LGConv`` call per layer with torch's CSR product
  and its symmetric backward, torch gathers and ``nn.Embedding`` lookups for the L2;
- ``fused``: :class:`recfb.models.lightgcn.LightGCNScorer` as it trains on CPU now (one fused
  ``mean(A^0..A^K)`` kernel each way, the batch's scores and L2 from kernels).

The two styles' gradients on the first batch are compared (max abs difference). Part 2 fits
``LightGCN()`` and implicit's BPR on the leaderboard's split (``random_holdout(test_fraction=0.2,
seed=0)``, binarised) and reports test NDCG@10 and fit seconds with their ratio.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

_ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
_ap.add_argument("--datasets", nargs="+", default=["ml-100k", "lastfm-2k"])
_ap.add_argument("--threads", type=int, default=2)
_ap.add_argument("--steps", type=int, default=20)
_ap.add_argument("--rounds", type=int, default=5)
_ap.add_argument("--skip-step", action="store_true")
_ap.add_argument("--skip-fit", action="store_true")
ARGS = _ap.parse_args()
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)  # before torch, numba and implicit load

import torch  # noqa: E402

from recfb.evaluation import ranking_metrics  # noqa: E402
from recfb.models import LightGCN  # noqa: E402
from recfb.models.lightgcn import LightGCNScorer, normalized_adjacency  # noqa: E402

torch.set_num_threads(ARGS.threads)


class LayerwiseScorer(LightGCNScorer):
    """The scorer's training path before issue 13: autograd through each LGConv call."""

    def propagate(self):
        x = out = self.embedding.weight
        for _ in range(self.num_layers):
            x = self.conv(x, self.adj)
            out = out + x
        return out / (self.num_layers + 1)

    def batch_scores(self, users, pos, neg):
        final = self.propagate()
        u, p, n = final[users], final[self.n_users + pos], final[self.n_users + neg]
        return (u * p).sum(-1), (u.unsqueeze(1) * n).sum(-1)

    def regularization(self, users, pos, neg):
        e = self.embedding
        reg = e(users).pow(2).sum() + e(self.n_users + pos).pow(2).sum() + e(self.n_users + neg).pow(2).sum() / neg.shape[1]
        return self.regularization_weight * reg / (2 * users.numel())


def load_split(name):
    """The leaderboard's binary train / test CSR of ``name`` (``benchmarks/leaderboard.py``)."""
    from leaderboard import load_split as leaderboard_split
    return leaderboard_split(name)[:2]


def step_times(X, steps, rounds, batch):
    n_users, n_items = X.shape
    adjacency = normalized_adjacency(X)
    coo = X.tocoo()
    users, items = torch.as_tensor(coo.row.astype(np.int64)), torch.as_tensor(coo.col.astype(np.int64))
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(steps + 3):
        idx = torch.randint(0, users.numel(), (batch,), generator=gen)
        batches.append((users[idx], items[idx], torch.randint(0, n_items, (batch, 1), generator=gen)))

    def build(cls):
        scorer = cls(n_users, n_items, 64, torch.Generator().manual_seed(0), adjacency, regularization=1e-4)
        return scorer, torch.optim.Adam(scorer.parameters(), lr=0.01, fused=True)

    def loss_of(scorer, b):
        pos, neg = scorer.batch_scores(*b)
        return -torch.nn.functional.logsigmoid(pos.unsqueeze(1) - neg).mean() + scorer.regularization(*b)

    styles = {"layers": build(LayerwiseScorer), "fused": build(LightGCNScorer)}
    grads = {}
    for name, (scorer, _) in styles.items():
        loss_of(scorer, batches[0]).backward()
        grads[name] = scorer.embedding.weight.grad.clone()
        scorer.embedding.weight.grad = None
    grad_diff = float((grads["layers"] - grads["fused"]).abs().max())
    grad_scale = float(grads["layers"].abs().max())

    def run(scorer, opt):
        for b in batches[:3]:  # warm-up (numba's compile or cache load, allocator)
            opt.zero_grad(set_to_none=True)
            loss_of(scorer, b).backward()
            opt.step()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches[3:]:
            opt.zero_grad(set_to_none=True)
            loss_of(scorer, b).backward()
            opt.step()
        return (time.perf_counter() - t0) / steps * 1e3, (time.process_time() - c0) / steps * 1e3

    times = {name: [] for name in styles}
    for _ in range(rounds):  # interleaved: both styles see the same machine load
        for name, (scorer, opt) in styles.items():
            times[name].append(run(scorer, opt))
    median = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
    return median, times, grad_diff, grad_scale


def fit_rows(name, train, test):
    rows = []
    t0 = time.perf_counter()
    model = LightGCN().fit(train, show_progress=False)
    seconds = time.perf_counter() - t0
    ndcg = ranking_metrics(model, train, test, k=10)["ndcg@10"]
    rows.append(("LightGCN()", ndcg, seconds, f"{model.batch_size_} x {model.iterations_} epochs"))
    try:
        from implicit.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        print(f"implicit not importable ({exc}); no peer row", file=sys.stderr)
        return rows
    with threadpool_limits(1, "blas"):
        peer = BayesianPersonalizedRanking(num_threads=ARGS.threads, random_state=0)
        t0 = time.perf_counter()
        peer.fit(train, show_progress=False)
        seconds = time.perf_counter() - t0
    rows.append(("implicit BayesianPersonalizedRanking()", ranking_metrics(peer, train, test, k=10)["ndcg@10"],
                 seconds, "100 iterations"))
    return rows


def main():
    import implicit
    import numba
    import torch_geometric
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads {ARGS.threads}; "
          f"load {os.getloadavg()[0]:.2f}; torch {torch.__version__}, numba {numba.__version__}, "
          f"torch_geometric {torch_geometric.__version__}, implicit {implicit.__version__}")
    for name in ARGS.datasets:
        train, test = load_split(name)
        print(f"\n## {name}: {train.shape[0]:,} x {train.shape[1]:,}, {train.nnz:,} train pairs")
        if not ARGS.skip_step:
            batch = LightGCN()._auto_settings(train, "adam")["batch_size"]  # the default batch of this log
            med, times, diff, scale = step_times(train, ARGS.steps, ARGS.rounds, batch)
            (lw, lc), (fw, fc) = med["layers"], med["fused"]
            print(f"step ({batch:,} pairs, BPR, Adam), ms, median of {ARGS.rounds} interleaved rounds of {ARGS.steps} "
                  f"steps: wall layers {lw:.2f}, fused {fw:.2f} ({lw / fw:.2f}x); process_time (CPU of all threads) "
                  f"layers {lc:.2f}, fused {fc:.2f} ({lc / fc:.2f}x)")
            print("  rounds (wall/cpu): " + "; ".join(f"{k} " + ", ".join(f"{w:.1f}/{c:.1f}" for w, c in v)
                                                      for k, v in times.items()))
            print(f"  first-batch gradient, max |layers - fused| = {diff:.2e} (max |grad| {scale:.2e})")
        if not ARGS.skip_fit:
            rows = fit_rows(name, train, test)
            print("| model | test NDCG@10 | fit s | setting |\n|---|---|---|---|")
            for model, ndcg, seconds, setting in rows:
                print(f"| {model} | {ndcg:.4f} | {seconds:.2f} | {setting} |")
            if len(rows) == 2:
                print(f"fit ratio LightGCN() / implicit BPR = {rows[0][2] / rows[1][2]:.2f}x; "
                      f"NDCG@10 ratio {rows[0][1] / rows[1][1]:.2f}x")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
