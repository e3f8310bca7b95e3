"""Feedback loops (Taori & Hashimoto, ICML 2023) in recommendation: does retraining on the
clicks of one's own lists amplify exposure bias, and what do a sampling policy and
propensity-weighted retraining with the loop's exact logged propensities change?

    RECFB_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 nice -n 19 \\
        .venv/bin/python benchmarks/feedback_loops.py [--quick] [--seeds 5] [--rounds 10]

Worlds (ML-100K-sized): the seeded synthetic world ``make_world(943 users, 1682 items,
density 0.01, popularity_exponent 1)`` and Saito's semi-synthetic ML-100K
(``make_semi_synthetic(power=1)``, the completion fitted once); seed s draws world s (clicks,
and for the synthetic world its relevance too) and seeds the loop and the models. Every model
is ``MF(factors=32, iterations=15, learning_rate=0.01, batch_size=2048, optimizer="adam")``
(explicit settings, not the library defaults) refitted fresh every round on the whole log,
with BPR (naive, IPS, SNIPS weights; L2 0.01) or a pointwise log loss with 4 uniform negatives
of weight 1 (naive BCE, L2 0.03; Rel-MF and clipped DR Rel-MF, L2 0.3, clip 0.05, the
loop's logged propensities). Policies: top-k, epsilon-greedy (0.1), Plackett-Luce softmax at
temperature 1. Examination ``1 / position``; k = 10; every user visits every round.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import recfb
from recfb.datasets import make_world
from recfb.models import MF
from recfb.simulate import plot_histories, run_loop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import shared_data_dir  # noqa: E402

EPOCHS = 15
CLIP = 0.05  # propensity floor of IPS/SNIPS, Rel-MF and DR (weights at most 20)
TEMPERATURE = 1.0
# name -> (policy, weighting, model family); families in MODELS
CONFIGS = {
    "top-k, naive BPR": ("topk", "naive", "bpr"),
    "epsilon 0.1, naive BPR": ("epsilon", "naive", "bpr"),
    "softmax, naive BPR": ("softmax", "naive", "bpr"),
    "softmax, IPS BPR": ("softmax", "ips", "bpr"),
    "softmax, SNIPS BPR": ("softmax", "snips", "bpr"),
    "softmax, naive BCE": ("softmax", "naive", "bce"),
    "softmax, Rel-MF": ("softmax", "propensity", "relmf"),
    "softmax, DR Rel-MF": ("softmax", "propensity", "dr"),
}
# one setting per family (L2 picked from {0.03, 0.3} for the pointwise ones, {1e-4, 0.01} for BPR, by one
# fit on seed 0's initial log); pointwise losses: 4 uniform negatives, each weighted 1 (Rel-MF's negative_weight)
REGULARIZATION = {"bpr": 0.01, "bce": 0.03, "relmf": 0.3, "dr": 0.3}
METRICS = ("true_dcg", "exposure_gini", "log_gini", "coverage", "top1pct_share", "novelty")


def factory(family, seed, epochs, n_items):
    L = recfb.losses
    ones = np.ones(n_items)

    def make():
        if family == "bpr":
            loss, negatives = "bpr", 1
        else:  # the loop replaces the propensity of Rel-MF / DR with the logged one
            loss = {"bce": lambda: L.RelMF(ones, negative_weight=1.0),
                    "relmf": lambda: L.RelMF(ones, clip=CLIP, negative_weight=1.0),
                    "dr": lambda: L.DRRelMF(ones, clip=CLIP, negative_weight=1.0)}[family]()
            negatives = 4
        return MF(loss=loss, factors=32, iterations=epochs, learning_rate=0.01, batch_size=2048, optimizer="adam",
                  regularization=REGULARIZATION[family], num_negatives=negatives, device="cpu", random_state=seed,
                  num_threads=1)
    return make


def worlds(args):
    out = {}
    if "synthetic" in args.worlds:
        out["synthetic"] = lambda s: make_world(n_users=943, n_items=1682, density=0.01, popularity_exponent=1.0, seed=s)
    if "semi" in args.worlds:
        from recfb.datasets import load
        from recfb.debias import complete_ratings, make_semi_synthetic
        R = load("ml-100k", data_dir=shared_data_dir(), download=False).matrix
        completed = complete_ratings(R, rank=10, seed=0)
        out["semi-synthetic ML-100K"] = lambda s: make_semi_synthetic(R, power=1.0, seed=s, completed=completed)
    return out


def summarise(runs):
    """metric -> (mean, std) over seeds of round 0, the last round and the mean over rounds."""
    out = {}
    for m in METRICS:
        v = np.stack([r.history[m].to_numpy(np.float64) for r in runs])
        out[m] = {"first": (v[:, 0].mean(), v[:, 0].std()), "last": (v[:, -1].mean(), v[:, -1].std()),
                  "mean": (v.mean(1).mean(), v.mean(1).std()), "rise": ((v[:, -1] - v[:, 0]).mean(),
                                                                          (v[:, -1] - v[:, 0]).std())}
    return out


def _ms(values, fmt="{:.3f}"):
    v = np.asarray(values, np.float64)
    return f"{fmt.format(v.mean())} ± {fmt.replace('+', '').format(v.std())}"


def markdown(report) -> list[str]:
    """Tables of a report (one per world): mean ± std over seeds."""
    lines = []
    for wname, configs in report.items():
        first = next(iter(configs.values()))
        n_seeds, n_rounds = len(first["histories"]), len(first["histories"][0]["round"])
        lines += [f"**{wname}** ({n_seeds} seeds, {n_rounds} rounds, k = 10; mean ± std over seeds; "
                  f"round 0 = the first lists, trained on the world's own clicks)", "",
                  "| policy, retraining | log Gini: start -> after last round (rise) | exposure Gini r0 -> last "
                  "| top-1% share r0 -> last | coverage last | true DCG@10 r0 | last | mean over rounds | s / loop |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for cname, c in configs.items():
            h = {m: np.array([hist[m] for hist in c["histories"]], np.float64) for m in c["histories"][0]}
            start = np.asarray(c["initial_log_gini"])
            rise = _ms(h["log_gini"][:, -1] - start, "{:+.3f}")
            lines.append(
                f"| {cname} | {start.mean():.3f} -> {_ms(h['log_gini'][:, -1])} (**{rise}**)"
                f" | {_ms(h['exposure_gini'][:, 0])} -> {_ms(h['exposure_gini'][:, -1])}"
                f" | {_ms(h['top1pct_share'][:, 0])} -> {_ms(h['top1pct_share'][:, -1])}"
                f" | {_ms(h['coverage'][:, -1])} | {_ms(h['true_dcg'][:, 0], '{:.4f}')}"
                f" | {_ms(h['true_dcg'][:, -1], '{:.4f}')} | {_ms(h['true_dcg'].mean(1), '{:.4f}')}"
                f" | {np.mean(c['seconds']):.0f} |")
        lines.append("")
    return lines


def _plot(curves, folder, wname):
    Path(folder).mkdir(parents=True, exist_ok=True)
    slug = wname.split()[0].replace("-", "_")
    plot_histories(curves, Path(folder) / f"feedback_loops_{slug}.png",
                   metrics=("true_dcg", "exposure_gini", "log_gini", "top1pct_share"), dpi=55)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 3 rounds, 5 epochs, synthetic world only")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--temperature", type=float, default=TEMPERATURE)
    p.add_argument("--configs", nargs="+", default=None, help=f"subset of {list(CONFIGS)}")
    p.add_argument("--worlds", nargs="+", choices=("synthetic", "semi"), default=["synthetic", "semi"])
    p.add_argument("--json", default=None, help="write every history here")
    p.add_argument("--plots", default=None, help="folder for the PNG curves")
    p.add_argument("--from-json", nargs="+", default=None, help="only print the tables of saved --json reports")
    args = p.parse_args()
    if args.from_json:
        report = {}
        for path in args.from_json:  # reports of separate runs (e.g. one per configuration) merge
            for wname, configs in json.loads(Path(path).read_text()).items():
                report.setdefault(wname, {}).update(configs)
        print("\n".join(markdown(report)))
        if args.plots:
            import pandas as pd
            for wname, configs in report.items():
                curves = {c: [pd.DataFrame(h) for h in v["histories"]] for c, v in configs.items()}
                _plot(curves, args.plots, wname)
        return
    if args.quick:
        args.seeds, args.rounds, args.epochs, args.worlds = 1, 3, 5, ["synthetic"]
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads "
          f"{torch.get_num_threads()}; python {sys.version.split()[0]}, torch {torch.__version__}, numpy "
          f"{np.__version__}, recfb {recfb.__version__}; rounds {args.rounds}, seeds {args.seeds}, epochs "
          f"{args.epochs}, softmax temperature {args.temperature}, clip {CLIP}", flush=True)
    configs = {n: CONFIGS[n] for n in (args.configs or CONFIGS)}
    t_all = time.perf_counter()
    report = {}
    for wname, make in worlds(args).items():
        print(f"== {wname} ==", flush=True)
        built = [make(s) for s in range(args.seeds)]
        report[wname] = {}
        curves = {}
        for cname, (policy, weighting, family) in configs.items():
            runs, secs = [], []
            for s, w in enumerate(built):
                t0 = time.perf_counter()
                make_model = factory(family, s, args.epochs, w.relevance_prob.shape[1])
                runs.append(run_loop(w, make_model, policy=policy, rounds=args.rounds, k=10,
                                     weighting=weighting, clip=CLIP if weighting in ("ips", "snips") else None,
                                     temperature=args.temperature, epsilon=0.1, seed=s, show_progress=False))
                secs.append(time.perf_counter() - t0)
            curves[cname] = runs
            summ = summarise(runs)
            report[wname][cname] = {"summary": summ, "seconds": secs,
                                    "initial_log_gini": [r.params["initial_log_gini"] for r in runs],
                                    "histories": [r.history.to_dict(orient="list") for r in runs]}
            g, d = summ["exposure_gini"], summ["true_dcg"]
            print(f"  {cname:24s} exposure Gini {g['first'][0]:.3f} -> {g['last'][0]:.3f} (rise {g['rise'][0]:+.3f} "
                  f"+- {g['rise'][1]:.3f})  log Gini {np.mean(report[wname][cname]['initial_log_gini']):.3f} -> "
                  f"{summ['log_gini']['last'][0]:.3f}  true DCG@10 last "
                  f"{d['last'][0]:.4f} +- {d['last'][1]:.4f}, mean {d['mean'][0]:.4f}  "
                  f"({np.mean(secs):.0f} s/loop)", flush=True)
            if args.json:  # after every configuration, so an interrupted run keeps what it measured
                Path(args.json).write_text(json.dumps(report, indent=1, default=float))
        if args.plots:
            _plot(curves, args.plots, wname)
    print("\n".join(markdown(report)))
    print(f"total {time.perf_counter() - t_all:.0f}s", flush=True)


if __name__ == "__main__":
    main()
