"""recfb.tune against the defaults under the issue's two special protocols: the debiasing
objectives on an MNAR validation click log (IPS), the denoisers on clean validation.

    RECFB_DATA_DIR=../shared/datasets nice -n 10 .venv/bin/python benchmarks/tune_protocols.py
        [--trials 30] [--families unbiased denoise] [--models relmf ubpr ...] [--output FILE]
    add --quick for a smoke run (3 trials, the small worlds, short training)

**unbiased** (``MF(loss="relmf" | "ubpr" | "relmf_dr")``): the semi-synthetic world of
``benchmarks/_defaults_noisy.unbiased_world`` (semi-ML-100K; seed 0), whose click log is split
per click 80/20 (seeded) into a fit log and an MNAR validation log. Tuning maximises
``ips_dcg@5`` of :class:`recfb.tune.IPS` (popularity propensities of the fit log, eta 0.5,
``ip_cap=100``) on the validation log, as the debiasing benchmark does. Only reported: the
world's true DCG@5 (full ranking, fit-log items excluded), which tuning never sees.

**denoise** (``MF(loss="bce", denoise=TCE())``, ``RCE()``, ``MF(loss="bpr", denoise=PLD())``,
``MF(loss="nbpo")``): ml-100k with 20% injected noise (``_defaults_noisy.denoise_split``,
seed 0): tuning maximises NDCG@20 of :class:`recfb.tune.Clean` on the clean validation part;
clean-test NDCG@20 is only reported.

"defaults" is the model as constructed (its loss and denoiser set), validated every epoch on
the same protocol with the best epoch kept, exactly as inside a trial; "tuned" is
``recfb.tune.search(model, fit, valid, protocol=..., n_trials=N, seed=0)`` over MF's own
``search_space`` less ``loss`` (factors, learning rate, L2, negatives; the first trial is the
model's derived defaults; the loss and the denoiser are the model under test and stay fixed),
plus the denoiser's own declared space (``denoise__drop_rate`` for T-CE, ``denoise__beta`` for
R-CE, ``denoise__temperature`` for PLD), as ``recfb.tune.search``'s default space has it.
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
from _report import emit

FAMILIES = ("unbiased", "denoise")


def _models():
    from recfb.denoise import PLD, RCE, TCE
    from recfb.models import MF
    return {"unbiased": {"relmf": lambda: MF(loss="relmf"), "ubpr": lambda: MF(loss="ubpr"),
                         "relmf_dr": lambda: MF(loss="relmf_dr")},
            "denoise": {"bce+tce": lambda: MF(loss="bce", denoise=TCE()),
                        "bce+rce": lambda: MF(loss="bce", denoise=RCE()),
                        "bpr+pld": lambda: MF(loss="bpr", denoise=PLD()),
                        "nbpo": lambda: MF(loss="nbpo")}}


def click_holdout(X: sp.csr_matrix, fraction: float, seed: int):
    """``(fit, valid)``: each click goes to ``valid`` with probability ``fraction`` (seeded)."""
    coo = X.tocoo()
    hold = np.random.default_rng(seed).random(coo.nnz) < fraction
    part = lambda m: sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=X.shape)  # noqa: E731
    return part(~hold), part(hold)


def _setup(family, quick):
    """``(fit_X, valid_X, protocol, metric, truth(model) -> float, truth_name, description)``."""
    from _defaults_noisy import denoise_split, ndcg, world_relevance

    from recfb.debias import popularity_propensity
    from recfb.evaluation import true_relevance_metrics
    from recfb.tune import IPS, Clean

    if family == "unbiased":
        name = "synthetic" if quick else "semi-ml-100k"
        train, gamma = world_relevance(name, quick=quick, seed=0)
        fit, valid = click_holdout(sp.csr_matrix(train), 0.2, seed=0)
        assert fit.multiply(valid).nnz == 0  # disjoint click logs
        theta = popularity_propensity(fit, eta=0.5)
        truth = lambda m: true_relevance_metrics(m, fit, gamma, k=5)["dcg@5"]  # noqa: E731
        return (fit, valid, IPS(propensity=theta, ip_cap=100), "ips_dcg@5", truth, "true DCG@5",
                f"{name} (seed 0): fit log {fit.nnz:,} clicks, MNAR validation log {valid.nnz:,}")
    train, valid, test = denoise_split("synthetic-noise" if quick else "ml-100k-noise", quick=quick, seed=0)
    truth = lambda m: ndcg(m, train + valid, test)  # noqa: E731
    return (train, valid, Clean(), "ndcg@20", truth, "clean-test NDCG@20",
            f"{'synthetic-noise' if quick else 'ml-100k-noise'} (seed 0): noisy train {train.nnz:,}, clean validation "
            f"{valid.nnz:,}, clean test {test.nnz:,}")


def main(argv=None):
    import optuna
    import torch

    import recfb
    from recfb import tune
    from recfb.tune import make_protocol

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--models", nargs="+", default=None, help="keys within the families (default: all)")
    p.add_argument("--pruner-warmup", type=int, default=None,
                   help="epochs before the median pruner may stop a trial (default: recfb.tune's)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    from recfb.models import MF
    from recfb.tune.space import component_space
    # MF's own space without ``loss``: the objective (and the denoiser) is the model under test
    space = {k: v for k, v in MF.search_space.items() if k != "loss"}
    pruner = None if args.pruner_warmup is None else optuna.pruners.MedianPruner(
        n_startup_trials=5, n_warmup_steps=args.pruner_warmup)
    torch.set_num_threads(int(os.environ.get("RECFB_BENCH_THREADS", "1")))
    trials = 3 if args.quick else args.trials
    env = (f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
           f"optuna {optuna.__version__}, recfb {recfb.__version__}, {os.cpu_count()} cores")
    lines = ["# recfb.tune vs defaults under the IPS and clean protocols", "",
             f"Command: `python benchmarks/tune_protocols.py {' '.join(sys.argv[1:] if argv is None else argv)}`  ",
             f"Environment: {env}; {trials} trials per model, TPE seed 0, median pruner on per-epoch validation.", ""]
    rows = []
    for family in args.families:
        fit, valid, proto, metric, truth, truth_name, desc = _setup(family, args.quick)
        print(desc, flush=True)
        lines += [f"## {family}: {desc}", "", f"| model | valid {metric} default | valid tuned | {truth_name} default "
                  "| tuned | trials (pruned) | tuning s | best parameters |", "|---|---|---|---|---|---|---|---|"]
        for key, make in _models()[family].items():
            if args.models and key not in args.models:
                continue
            t0 = time.perf_counter()
            default = make()
            if args.quick:
                default.set_params(iterations=3)
            bound = make_protocol(proto).bind(default, fit, valid)
            k = int(metric.split("@")[1])
            score = lambda m, k=k: float(bound.evaluate(m, (k,))[metric])  # noqa: E731
            default.fit(bound.fit_X, show_progress=False, **bound.valid_kwargs(score))
            d_valid, d_truth = score(default), truth(default)
            d_s = time.perf_counter() - t0
            model = make()
            if args.quick:
                model.set_params(iterations=3)
            t0 = time.perf_counter()
            res = tune.search(model, fit, valid, metric=metric, protocol=proto, n_trials=trials, seed=0,
                              space={**space, **component_space(model)}, show_progress=False, pruner=pruner)
            t_s = time.perf_counter() - t0
            states = [t.state.name for t in res.study.trials]
            r = {"family": family, "model": key, "default_valid": d_valid, "tuned_valid": res.best_value,
                 "default_truth": d_truth, "tuned_truth": truth(res.best_model), "trials": len(states),
                 "pruned": states.count("PRUNED"), "default_s": d_s, "tune_s": t_s, "best_params": res.best_params}
            rows.append(r)
            print(f"{key:<9} valid {d_valid:.4f} -> {r['tuned_valid']:.4f}  {truth_name} {d_truth:.4f} -> "
                  f"{r['tuned_truth']:.4f}  ({r['trials']} trials, {r['pruned']} pruned, {t_s:.0f} s) "
                  f"{json.dumps(res.best_params, default=str)}", flush=True)
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.best_params.items())
            lines.append(f"| `{key}` | {d_valid:.4f} | {r['tuned_valid']:.4f} | {d_truth:.4f} | {r['tuned_truth']:.4f} "
                         f"| {r['trials']} ({r['pruned']}) | {t_s:.0f} | {params} |")
        lines.append("")
    behind = [r["model"] for r in rows if not r["tuned_valid"] > r["default_valid"] + 1e-12]
    lines += [f"Tuned beats the defaults on validation for {len(rows) - len(behind)} of {len(rows)} models"
              f"{'; not for ' + ', '.join(behind) if behind else ''}.", ""]
    emit(lines, args.output)
    return rows


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
