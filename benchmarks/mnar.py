"""Learning from missing-not-at-random feedback: the semi-synthetic protocol on MovieLens 100K
and Coat's MAR test (issue 7's targets).

    RECFB_DATA_DIR=../shared/datasets nice -n 10 python benchmarks/mnar.py [--quick] [--seeds 5]

Semi-synthetic (Saito et al., WSDM 2020): ML-100K ratings completed by a low-rank model fitted
on the observed entries only; relevance gamma from the completed ratings, exposure
theta_i = (n_i / max n) ** power; clicks = exposure x relevance, split 80/20 into train and a
validation log. Every method is tuned on seed 0 by IPS-DCG@5 (true propensities, ip_cap 100) on
the validation log with recfb.tune.search and the same number of trials (--trials): L2
(--reg-range), Adam's learning rate, and the negative weight (pointwise) or number of negatives
(pairwise), the epochs by per-epoch validation; figures are the true DCG@5 (gains = gamma, full ranking,
train clicks excluded), mean and std over seeds (each seed draws a new click log and a new
initialisation). Coat: clicks = MNAR train ratings >= 4, MAR test relevant = rating >= 4,
popularity propensities (eta 0.5), tuned on a held-out 20% of the train clicks by IPS-DCG@5
(same search).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import optuna
import scipy.sparse as sp
import torch

import recfb
from recfb.datasets import load
from recfb.debias import complete_ratings, make_semi_synthetic, popularity_propensity
from recfb.evaluation import mar_ranking_metrics, popularity_buckets, true_relevance_metrics
from recfb.models import EASE, MF, MostPopular

# recfb.tune search space of every method (seeded TPE; --trials trials each, the size of the former
# 2 x 2 x 3 grid): L2, Adam's learning rate and, for pointwise losses, the weight of each sampled
# negative (RelMF's negative_weight) or, for pairwise ones, the number of negatives. The epochs are
# chosen by per-epoch validation (the best trial's best epoch is used for every seed).
REG_RANGE = (0.01, 1.0)  # --reg-range changes it
LR_RANGE = (0.003, 0.03)
NEG_WEIGHTS = [1.0, 4.0, "all"]
NUM_NEGATIVES = [1, 4, 16]
MAX_EPOCHS = 40


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


def naive_imputation(X, seed, quick=False):
    """Click probabilities of a pre-trained naive pointwise MF (Rel-MF with theta = 1 and the
    exact all-pairs negative weight, so sigmoid(s) estimates P(click)); fixed configuration."""
    m = MF(factors=32, iterations=3 if quick else 15, batch_size=2048, learning_rate=0.01, device="cpu", num_negatives=4,
           regularization=0.1, loss=recfb.losses.RelMF(np.ones(X.shape[1]), negative_weight="all"),
           random_state=1000 + seed).fit(X, show_progress=False)
    return (1 / (1 + np.exp(-(m.user_factors @ m.item_factors.T)))).astype(np.float32)


def methods(theta, quick):
    """name -> (builder(cfg, seed, X, imputation) -> MF, pairwise). ``theta``: propensities for the
    unbiased losses. A cfg is {"regularization", "learning_rate", "iterations", "third"}: the
    third is the negative weight (pointwise losses) or num_negatives (pairwise ones)."""
    ones = np.ones_like(np.asarray(theta, np.float64))

    def mf(make_loss, pairwise=False, imputed=False):
        def build(cfg, seed, X, imputation=None):
            if imputed and imputation is None:
                imputation = naive_imputation(X, seed, quick)
            loss = make_loss(cfg["third"], imputation)
            return MF(regularization=cfg["regularization"], random_state=seed, factors=32,
                      iterations=cfg["iterations"], batch_size=2048, learning_rate=cfg["learning_rate"], device="cpu",
                      num_negatives=cfg["third"] if pairwise else 4, loss=loss)
        return build, pairwise, imputed

    L = recfb.losses
    every = {
        "MF-BCE (naive)": mf(lambda nw, imp: L.RelMF(ones, negative_weight=nw)),
        "MF-BPR (naive)": mf(lambda n, imp: "bpr", pairwise=True),
        "Rel-MF clip 0.01": mf(lambda nw, imp: L.RelMF(theta, clip=0.01, negative_weight=nw)),
        "Rel-MF clip 0.1": mf(lambda nw, imp: L.RelMF(theta, clip=0.1, negative_weight=nw)),
        "Rel-MF clip 0.3": mf(lambda nw, imp: L.RelMF(theta, clip=0.3, negative_weight=nw)),
        "UBPR clip 0.1 (nn)": mf(lambda n, imp: L.UBPR(theta, clip=0.1, nonnegative=True), pairwise=True),
        "DR Rel-MF clip 0.1 (naive-MF imputed)": mf(lambda nw, imp: L.DRRelMF(
            theta, clip=0.1, negative_weight=nw, imputation=imp), imputed=True),
        "DR Rel-MF clip 0.3 (naive-MF imputed)": mf(lambda nw, imp: L.DRRelMF(
            theta, clip=0.3, negative_weight=nw, imputation=imp), imputed=True),
    }
    if quick:  # the smoke run: one method of each kind
        return {k: every[k] for k in ("MF-BCE (naive)", "Rel-MF clip 0.1", "UBPR clip 0.1 (nn)",
                                      "DR Rel-MF clip 0.1 (naive-MF imputed)")}
    return every


def tune(method, X, valid, theta, quick, n_trials):
    """``recfb.tune.search`` by IPS-DCG@5 (ip_cap 100) on the validation log, seed 0; returns the
    cfg with the best trial's best epoch as ``iterations``."""
    build, pairwise, imputed = method
    imputation = naive_imputation(X, 0, quick) if imputed else None
    max_epochs = 3 if quick else MAX_EPOCHS

    def cfg_of(trial):
        return {"regularization": trial.suggest_float("regularization", *REG_RANGE, log=True),
                "learning_rate": trial.suggest_float("learning_rate", *LR_RANGE, log=True),
                "iterations": max_epochs,
                "third": trial.suggest_categorical("third", NUM_NEGATIVES if pairwise else NEG_WEIGHTS)}

    def space(trial):
        m = build(cfg_of(trial), 0, X, imputation)
        return {p: getattr(m, p) for p in ("regularization", "learning_rate", "num_negatives", "loss")}

    base = build(cfg_of(optuna.trial.FixedTrial({"regularization": 0.1, "learning_rate": 0.01, "third": 4})), 0, X,
                 imputation)
    result = recfb.tune.search(base, X, valid, metric="ips_dcg@5", protocol=recfb.tune.IPS(theta, ip_cap=100),
                               space=space, n_trials=1 if quick else n_trials, seed=0, show_progress=False,
                               refit=False)
    best = result.study.best_trial
    cfg = cfg_of(optuna.trial.FixedTrial(best.params))
    cfg["iterations"] = int(best.user_attrs.get("best_epoch", max_epochs))
    return cfg


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
    for name, method in methods(theta_items, args.quick).items():
        t0 = time.perf_counter()
        cfg = tune(method, w0.train, w0.valid, theta_items, args.quick, args.trials)
        tuned[name] = repr(cfg)
        build = method[0]
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
    ease = recfb.tune.search(EASE(), fit_part, valid, metric="ips_dcg@5", protocol=recfb.tune.IPS(theta, ip_cap=100),
                             space={"l2": ("float", 1.0, 100.0, "log")}, n_trials=1 if args.quick else 3, seed=0,
                             show_progress=False, refit=False)
    run("EASE", lambda s: EASE(**ease.best_params))
    for name, method in methods(theta, args.quick).items():
        cfg = tune(method, fit_part, valid, theta, args.quick, args.trials)
        print(f"  {name:38s} tuned {cfg}", flush=True)
        run(name, lambda s, b=method[0], c=cfg: b(c, s, clicks))
    return results


def main():
    global REG_RANGE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 3 epochs, 1 trial, 4 methods")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--power", type=float, default=1.0, help="popularity power law of semi-synthetic exposure")
    p.add_argument("--json", default=None, help="write all figures here")
    p.add_argument("--reg-range", type=float, nargs=2, default=list(REG_RANGE), metavar=("LOW", "HIGH"),
                   help="L2 range of the search (log scale)")
    p.add_argument("--trials", type=int, default=12, help="recfb.tune trials per method")
    args = p.parse_args()
    REG_RANGE = tuple(args.reg_range)
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
