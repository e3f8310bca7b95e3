"""Learning from missing-not-at-random feedback: the semi-synthetic protocol on MovieLens 100K
and Coat's MAR test (issue 7's targets).

    RECFB_DATA_DIR=../shared/datasets nice -n 10 python benchmarks/mnar.py [--quick] [--seeds 5]

Semi-synthetic (Saito et al., WSDM 2020): ML-100K ratings completed by a low-rank model fitted
on the observed entries only; relevance gamma from the completed ratings, exposure
theta_i = (n_i / max n) ** power; clicks = exposure x relevance, split 80/20 into train and a
validation log. Every method is tuned on seed 0 by IPS-DCG@5 (true propensities, ip_cap 100) on
the validation log over the same number of candidates: L2 (--grid) x (epochs, lr) in EPOCHS x
the negative weight (pointwise) or number of negatives (pairwise); figures are the true DCG@5 (gains = gamma, full ranking,
train clicks excluded), mean and std over seeds (each seed draws a new click log and a new
initialisation). Coat: clicks = MNAR train ratings >= 4, MAR test relevant = rating >= 4,
popularity propensities (eta 0.5), tuned on a held-out 20% of the train clicks by IPS-DCG@5
(same grid).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

import recfb
from recfb.datasets import load
from recfb.debias import complete_ratings, make_semi_synthetic, popularity_propensity
from recfb.evaluation import ips_ranking_metrics, mar_ranking_metrics, popularity_buckets, true_relevance_metrics
from recfb.models import EASE, MF, MostPopular

GRID = (0.03, 0.3)  # L2 candidates tuned on the validation log; --grid changes it
EPOCHS = ((15, 0.01), (40, 0.01))  # (epochs, Adam learning rate) candidates
NEG_WEIGHTS = (1.0, 4.0, "all")  # pointwise losses: weight of each sampled negative (RelMF's negative_weight)


class OracleScores(recfb.models.Recommender):
    """Ranks by the true relevance probability (the semi-synthetic upper bound)."""

    def __init__(self, scores=None):
        self.scores = scores

    __repr__ = object.__repr__

    def fit(self, X, show_progress=False):
        self.n_users_, self.n_items_ = self.scores.shape
        return self

    def _score(self, userids, user_items):
        return self.scores[userids]


def naive_imputation(X, seed):
    """Click probabilities of a pre-trained naive pointwise MF (Rel-MF with theta = 1 and the
    exact all-pairs negative weight, so sigmoid(s) estimates P(click)); fixed configuration."""
    m = MF(factors=32, iterations=15, batch_size=2048, learning_rate=0.01, device="cpu", num_negatives=4,
           regularization=0.1, loss=recfb.losses.RelMF(np.ones(X.shape[1]), negative_weight="all"),
           random_state=1000 + seed).fit(X, show_progress=False)
    return (1 / (1 + np.exp(-(m.user_factors @ m.item_factors.T)))).astype(np.float32)


def methods(theta, quick):
    """name -> (builder(cfg, seed, X), grid of cfg). ``theta``: propensities for the unbiased
    losses. A cfg is (L2, (epochs, lr), negative weight) for pointwise losses and (L2, (epochs,
    lr), num_negatives) for pairwise ones; every method gets the same number of candidates."""
    epochs = ((8, 0.01),) if quick else EPOCHS
    ones = np.ones_like(np.asarray(theta, np.float64))

    def mf(make_loss, pairwise=False):
        def build(cfg, seed, X):
            reg, (it, lr), third = cfg
            loss = make_loss(third, X, seed)
            return MF(regularization=reg, random_state=seed, factors=32, iterations=it, batch_size=2048,
                      learning_rate=lr, device="cpu", num_negatives=third if pairwise else 4, loss=loss)
        thirds = (1, 4, 16) if pairwise else NEG_WEIGHTS
        return build, [(r, e, t) for r in GRID for e in epochs for t in (thirds[1:2] if quick else thirds)]

    L = recfb.losses
    return {
        "MF-BCE (naive)": mf(lambda nw, X, s: L.RelMF(ones, negative_weight=nw)),
        "MF-BPR (naive)": mf(lambda n, X, s: "bpr", pairwise=True),
        "Rel-MF clip 0.01": mf(lambda nw, X, s: L.RelMF(theta, clip=0.01, negative_weight=nw)),
        "Rel-MF clip 0.1": mf(lambda nw, X, s: L.RelMF(theta, clip=0.1, negative_weight=nw)),
        "Rel-MF clip 0.3": mf(lambda nw, X, s: L.RelMF(theta, clip=0.3, negative_weight=nw)),
        "UBPR clip 0.1 (nn)": mf(lambda n, X, s: L.UBPR(theta, clip=0.1, nonnegative=True), pairwise=True),
        "DR Rel-MF clip 0.1 (naive-MF imputed)": mf(lambda nw, X, s: L.DRRelMF(
            theta, clip=0.1, negative_weight=nw, imputation=naive_imputation(X, s))),
        "DR Rel-MF clip 0.3 (naive-MF imputed)": mf(lambda nw, X, s: L.DRRelMF(
            theta, clip=0.3, negative_weight=nw, imputation=naive_imputation(X, s))),
    }


def tune(build, grid, X, valid, theta):
    """The grid point with the best IPS-DCG@5 (ip_cap 100) on the validation log, seed 0."""
    best = None
    for cfg in grid:
        m = build(cfg, 0, X).fit(X, show_progress=False)
        v = ips_ranking_metrics(m, X, valid, theta, k=5, ip_cap=100)["ips_dcg@5"]
        if best is None or v > best[0]:
            best = (v, cfg)
    return best[1]


def semi_synthetic(args):
    ml = load("ml-100k", download=False)
    R = ml.matrix
    completed = complete_ratings(R, rank=10, seed=0)
    worlds = [make_semi_synthetic(R, power=args.power, seed=s, completed=completed) for s in range(args.seeds)]
    w0 = worlds[0]
    print(f"semi-synthetic: {R.shape}, train clicks {w0.train.nnz}, valid {w0.valid.nnz}, "
          f"mean gamma {w0.relevance_prob.mean():.3f}, theta min {w0.propensity.min():.4f}", flush=True)
    theta_items = w0.propensity[0]  # per-item law, the same in every world
    table = {}

    def evaluate(model, w):
        return true_relevance_metrics(model, w.train, w.relevance_prob, k=5)["dcg@5"]

    table["Popularity"] = [evaluate(MostPopular().fit(w.train), w) for w in worlds]
    table["Oracle (true gamma)"] = [evaluate(OracleScores(w.relevance_prob).fit(w.train), w) for w in worlds]
    tuned = {}
    for name, (build, grid) in methods(theta_items, args.quick).items():
        t0 = time.perf_counter()
        cfg = tune(build, grid, w0.train, w0.valid, theta_items)
        tuned[name] = repr(cfg)
        table[name] = [evaluate(build(cfg, s, w.train).fit(w.train, show_progress=False), w)
                       for s, w in enumerate(worlds)]
        print(f"  {name:38s} {cfg}  true DCG@5 {np.mean(table[name]):.4f} +- {np.std(table[name]):.4f} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return table, tuned


def coat(args):
    data = load("coat", download=False)
    train_r, test = data.train.matrix, data.test.matrix
    clicks = train_r.copy()
    clicks.data = (clicks.data >= 4).astype(np.float32)
    clicks.eliminate_zeros()
    theta = popularity_propensity(clicks, eta=0.5)
    rng = np.random.default_rng(0)
    coo = clicks.tocoo()
    hold = rng.random(coo.nnz) < 0.2
    fit_part = sp.csr_matrix((coo.data[~hold], (coo.row[~hold], coo.col[~hold])), shape=clicks.shape)
    valid = sp.csr_matrix((coo.data[hold], (coo.row[hold], coo.col[hold])), shape=clicks.shape)
    rare = popularity_buckets(clicks, 0.5)["rare"]
    results = {}

    def run(name, make_model):
        rows = []
        for s in range(args.seeds):
            model = make_model(s).fit(clicks, show_progress=False)
            row = {}
            for proto in ("full", "saito"):
                res = mar_ranking_metrics(model, clicks, test, k=5, protocol=proto, threshold=4)
                rare_res = mar_ranking_metrics(model, clicks, test, k=5, protocol=proto, threshold=4, relevant_items=rare)
                row.update({f"{proto}/{m}": res[f"{m}@5"] for m in ("dcg", "recall", "map")})
                row[f"{proto}/rare_dcg"] = rare_res["dcg@5"]
            rows.append(row)
        results[name] = {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in rows[0]}
        r = results[name]
        print(f"  {name:28s} full DCG@5 {r['full/dcg'][0]:.4f}  saito DCG@5 {r['saito/dcg'][0]:.4f}  "
              f"rare(saito) {r['saito/rare_dcg'][0]:.4f}", flush=True)

    run("Popularity", lambda s: MostPopular())
    best_l2 = None
    for l2 in (1.0, 10.0, 100.0):
        ease = EASE(l2=l2).fit(fit_part, show_progress=False)
        v = ips_ranking_metrics(ease, fit_part, valid, theta, k=5, ip_cap=100)["ips_dcg@5"]
        best_l2 = max(best_l2 or (v, l2), (v, l2))
    run("EASE", lambda s: EASE(l2=best_l2[1]))
    for name, (build, grid) in methods(theta, args.quick).items():
        cfg = tune(build, grid, fit_part, valid, theta)
        print(f"  {name:38s} tuned {cfg}", flush=True)
        run(name, lambda s, b=build, c=cfg: b(c, s, clicks))
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, short training, no tuning (smoke run)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--power", type=float, default=1.0, help="popularity power law of semi-synthetic exposure")
    p.add_argument("--json", default=None, help="write all figures here")
    p.add_argument("--grid", type=float, nargs="+", default=[0.03, 0.3], help="L2 strengths to tune over")
    args = p.parse_args()
    global GRID
    GRID = tuple(args.grid)
    if args.quick:
        args.seeds = 1
    torch.set_num_threads(int(os.environ.get("RECFB_BENCH_THREADS", "2")))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads "
          f"{torch.get_num_threads()}; python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"numpy {np.__version__}, recfb {recfb.__version__}", flush=True)
    t0 = time.perf_counter()
    print("== semi-synthetic ML-100K (true DCG@5) ==", flush=True)
    semi, tuned = semi_synthetic(args)
    naive = np.mean(semi["MF-BCE (naive)"])
    print("ratios to naive MF-BCE / to popularity:")
    for name, vals in semi.items():
        print(f"  {name:28s} {np.mean(vals):.4f} +- {np.std(vals):.4f}   x{np.mean(vals) / naive:.3f} naive   "
              f"x{np.mean(vals) / np.mean(semi['Popularity']):.3f} popularity")
    print("== Coat (MAR test, rating >= 4) ==", flush=True)
    coat_res = coat(args)
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"semi_synthetic": semi, "tuned_reg": tuned, "coat": coat_res}, fh, indent=1)


if __name__ == "__main__":
    main()
