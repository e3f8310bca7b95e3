"""Noisy-label denoising under clean-test protocols: T-CE, R-CE, PLD and NBPO against the same
MF with the plain loss, mean and std over seeds.

    .venv/bin/python benchmarks/denoise.py                     # full run (about 25 min on 2 cores)
    .venv/bin/python benchmarks/denoise.py --quick             # smoke run, 1 seed, few epochs
    .venv/bin/python benchmarks/denoise.py --output benchmarks/denoise_results.md --plot benchmarks/denoise_noise_rate.png

Sections:

1. Natural noise, ml-100k (T-CE's protocol): every rating is a training positive; validation
   and test keep ratings >= 4 only. Per-user random 70/10/20 split, one per seed.
2. ModCloth as split by DeCA: noisy train (all ratings), clean test (rating 5).
3. Injected noise: ml-100k ratings >= 4 as the clean data, split 70/10/20; 10-40% random
   unobserved pairs added to each user's training rows (``inject_noise``); clean test.
   NDCG@20 against the noise rate is plotted, and the share of the NDCG@20 lost to 20% noise
   that each method recovers is reported.
4. Noise detection on the synthetic world (``make_world(noise_rate=0.2)``, where the noise is
   known): precision and recall of each denoiser's "noisy" decision.
5. Cost: seconds per epoch of each method relative to its plain loss (same run).

Denoiser settings (drop rate, beta, PLD's temperature, NBPO's flip regularisation) are chosen
on the clean validation part of section 1, seed 0, by ``recfb.tune.search`` (``--tune-trials``
each), and then used everywhere.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _report import emit, shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
K = 20


def environment() -> dict:
    import scipy
    import torch

    import recfb

    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "torch": f"{torch.__version__} "
            f"({torch.get_num_threads()} threads)", "recfb": recfb.__version__}


# ---------------------------------------------------------------------- methods
def methods(cfg: dict, epochs: int) -> dict:
    """name -> (family, factory of a fresh model). The plain loss of each family is its baseline."""
    from recfb.denoise import PLD, RCE, TCE
    from recfb.losses import NBPO
    from recfb.models import MF

    # optimizer="adam" for every method: "auto" would train the plain losses on the fused SGD kernel
    # (at this Adam learning rate) and the denoisers on Adam, comparing two update rules
    base = dict(factors=64, iterations=epochs, batch_size=2048, regularization=1e-5, device="cpu", optimizer="adam")
    bce = dict(base, loss="bce", num_negatives=4, learning_rate=0.005)
    bpr = dict(base, loss="bpr", num_negatives=1, learning_rate=0.005)
    return {
        "MF-BCE": ("bce", lambda s: MF(**bce, random_state=s)),
        "MF-BCE + T-CE": ("bce", lambda s: MF(**bce, random_state=s, denoise=TCE(cfg["drop_rate"], warmup=0.3))),
        "MF-BCE + R-CE": ("bce", lambda s: MF(**bce, random_state=s, denoise=RCE(cfg["beta"]))),
        "MF-BPR": ("bpr", lambda s: MF(**bpr, random_state=s)),
        "MF-BPR + PLD": ("bpr", lambda s: MF(**bpr, random_state=s, denoise=PLD(5, cfg["temperature"],
                                                                                 warmup_epochs=max(1, epochs // 6)))),
        "MF-NBPO": ("bpr", lambda s: MF(**dict(bce, negatives="verified", loss=NBPO(
            flip_factors=16, flip_regularization=cfg["flip_reg"], seed=s)), random_state=s)),
    }


def evaluate(model, train, test) -> dict:
    from recfb.evaluation import ranking_metrics

    r = ranking_metrics(model, train, test, k=(K,))
    return {"recall": r[f"recall@{K}"], "ndcg": r[f"ndcg@{K}"]}


def fit(factory, seed, train):
    t = time.perf_counter()
    model = factory(seed).fit(train, show_progress=False)
    secs = [h["seconds"] for h in model.history_]
    return model, float(np.median(secs)), time.perf_counter() - t


def binary(inter):
    import scipy.sparse as sp

    X = sp.csr_matrix(inter.matrix, dtype=np.float32)
    X.data[:] = 1.0
    return X


# ---------------------------------------------------------------------- protocols
def ml100k_natural(seed):
    from recfb.datasets import load, natural_noise_split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load("ml-100k", data_dir=shared_data_dir(), quiet=True)
    s = natural_noise_split(data, clean_threshold=4, test_fraction=0.2, validation_fraction=0.1, seed=seed)
    return binary(s.train), binary(s.valid), binary(s.test)


def modcloth(seed):
    from recfb.datasets import load

    d = load("modcloth-deca", data_dir=shared_data_dir(), quiet=True)
    return binary(d.train), binary(d.valid.subset(d.valid.values >= 5)), binary(d.test_clean)


def ml100k_injected(seed, rate):
    from recfb.data.split import random_holdout
    from recfb.datasets import inject_noise, load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load("ml-100k", data_dir=shared_data_dir(), quiet=True)
    clean = data.subset(data.values >= 4)
    train, valid, test = random_holdout(clean, test_fraction=0.2, validation_fraction=0.1, seed=seed)
    noisy, mask = inject_noise(train, rate, exclude=(valid, test), seed=seed) if rate > 0 else (train, None)
    return binary(noisy), binary(valid), binary(test)


# recfb.tune spaces of the denoisers' settings (the ranges of the former grids), tuned one at a
# time in this order, each with the others at their current value
TUNED = {"drop_rate": ("MF-BCE + T-CE", (0.05, 0.4, False)), "beta": ("MF-BCE + R-CE", (0.05, 0.6, False)),
         "temperature": ("MF-BPR + PLD", (0.05, 2.0, True)), "flip_reg": ("MF-NBPO", (1e-4, 1e-1, True))}


def tune(epochs, quick, n_trials=4):
    """Each setting tuned by ``recfb.tune.search`` on section 1's clean validation part (seed 0):
    NDCG@20, the "clean" protocol, seeded TPE, per-epoch validation with the median pruner."""
    from recfb import tune as rtune

    train, valid, _ = ml100k_natural(0)
    cfg = {"drop_rate": 0.2, "beta": 0.25, "temperature": 0.1, "flip_reg": 1e-3}
    log = {}
    for key, (name, (low, high, log_scale)) in TUNED.items():
        def space(trial, key=key, name=name, low=low, high=high, log_scale=log_scale):
            value = trial.suggest_float(key, low, high, log=log_scale)
            model = methods(dict(cfg, **{key: value}), epochs)[name][1](0)
            return {p: getattr(model, p) for p in ("denoise", "loss")}  # the objects that carry the setting

        base = methods(cfg, epochs)[name][1](0)
        result = rtune.search(base, train, valid, metric=f"ndcg@{K}", protocol="clean", space=space,
                              n_trials=1 if quick else n_trials, seed=0, show_progress=False, refit=False)
        done = [t for t in result.study.trials if t.state.name == "COMPLETE"]
        cfg[key] = float(result.study.best_trial.params[key])
        log[key] = {f"{t.params[key]:.4g}": round(t.value, 4) for t in done}
        print(f"[tune] {key}: {log[key]} -> {cfg[key]:.4g} ({len(result.study.trials) - len(done)} pruned)", flush=True)
    return cfg, log


def run_protocol(loader, seeds, cfg, epochs, names=None):
    """{method: {"recall": [...], "ndcg": [...], "epoch_s": [...]}} over seeds."""
    out = {}
    for seed in seeds:
        train, _, test = loader(seed)
        for name, (_, factory) in methods(cfg, epochs).items():
            if names is not None and name not in names:
                continue
            model, epoch_s, _ = fit(factory, seed, train)
            r = evaluate(model, train, test)
            d = out.setdefault(name, {"recall": [], "ndcg": [], "epoch_s": []})
            d["recall"].append(r["recall"])
            d["ndcg"].append(r["ndcg"])
            d["epoch_s"].append(epoch_s)
            print(f"  seed {seed} {name}: recall@{K} {r['recall']:.4f} ndcg@{K} {r['ndcg']:.4f} "
                  f"({epoch_s:.2f} s/epoch)", flush=True)
    return out


def ms(values) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def table(res, fam) -> list[str]:
    lines = [f"| method | Recall@{K} | NDCG@{K} | vs plain (NDCG) |", "|---|---|---|---|"]
    for name, d in res.items():
        plain = "MF-BCE" if fam[name] == "bce" else "MF-BPR"
        rel = np.mean(d["ndcg"]) / np.mean(res[plain]["ndcg"]) - 1 if plain in res else float("nan")
        lines.append(f"| {name} | {ms(d['recall'])} | {ms(d['ndcg'])} | {'' if name == plain else f'{rel:+.1%}'} |")
    return lines


def detection(cfg, epochs, seed=0) -> list[str]:
    """Precision / recall of each denoiser's noisy decision on a world with known noise."""
    from recfb.datasets import make_world

    world = make_world(n_users=2000, n_items=1000, density=0.02, noise_rate=0.2, seed=seed)
    order = np.lexsort((world.clicks.items, world.clicks.users))  # CSR order of the training interactions
    noise = world.noise_mask[order]
    X = binary(world.clicks)
    lines = ["| method | flagged | precision | recall | AUC of its noise score |", "|---|---|---|---|---|"]
    for name, (_, factory) in methods(cfg, epochs).items():
        if name in ("MF-BCE", "MF-BPR", "MF-NBPO"):
            continue
        model = factory(seed).fit(X, show_progress=False)
        d = model.denoise
        score = np.nan_to_num(d.noise_scores(), nan=-np.inf)
        if name.endswith("T-CE"):
            flagged = d.dropped_.cpu().numpy()
        else:  # the methods without a hard decision: flag as many as T-CE's final drop rate
            n_flag = int(round(cfg["drop_rate"] * noise.size))
            flagged = np.zeros(noise.size, bool)
            flagged[np.argsort(-score, kind="stable")[:n_flag]] = True
        prec = noise[flagged].mean() if flagged.any() else float("nan")
        rec = flagged[noise].mean()
        ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
        auc = (ranks[noise].mean() - (noise.sum() - 1) / 2) / (~noise).sum()
        lines.append(f"| {name} | {flagged.sum():,} | {prec:.3f} | {rec:.3f} | {auc:.3f} |")
        print(f"[4] {name}: flagged {flagged.sum()}, precision {prec:.3f}, recall {rec:.3f}, AUC {auc:.3f}", flush=True)
    lines += ["", f"{noise.size:,} training clicks, {noise.sum():,} injected ({noise.mean():.1%}); chance precision = "
              f"{noise.mean():.3f}. T-CE flags what it dropped at each interaction's last visit; R-CE (lowest weight) "
              "and PLD (highest pool loss) flag as many as T-CE's drop rate."]
    return lines


def cost_section(cfg, rounds: int) -> list[str]:
    """Seconds per epoch, robust to a shared machine: the methods run interleaved (one 3-epoch
    fit each per round, same data and seed) for ``rounds`` rounds and each keeps its fastest
    epoch; the ratio is to the plain loss of the same family."""
    train, _, _ = ml100k_natural(0)
    best = {}
    for _ in range(rounds):
        for name, (_, factory) in methods(cfg, 3).items():
            model = factory(0).fit(train, show_progress=False)
            t = min(h["seconds"] for h in model.history_[1:])  # epoch 1 includes set-up
            best[name] = min(best.get(name, np.inf), t)
    fam = {name: f for name, (f, _) in methods(cfg, 3).items()}
    lines = ["## 5. Cost: seconds per epoch on section 1's data (fastest of "
             f"{rounds} interleaved rounds)", "", "| method | s/epoch | vs plain | vs MF-BCE |", "|---|---|---|---|"]
    for name, t in best.items():
        plain = "MF-BCE" if fam[name] == "bce" else "MF-BPR"
        lines.append(f"| {name} | {t:.3f} | {t / best[plain]:.2f}x | {t / best['MF-BCE']:.2f}x |")
        print(f"[5] {name}: {t:.3f} s/epoch", flush=True)
    lines += ["", "Target: a denoiser costs at most 1.3x its plain loss per epoch. NBPO's plain counterpart is "
              "BPO, i.e. MF-BCE (pointwise log loss); it also draws verified negatives and trains a rank-16 flip "
              "model. PLD is compared with MF-BPR.", ""]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--cost-rounds", type=int, default=5)
    parser.add_argument("--tune-trials", type=int, default=4, help="recfb.tune trials per denoiser setting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest for these small models)")
    parser.add_argument("--only-cost", action="store_true", help="run section 5 alone")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.only_cost:
        cfg = {"drop_rate": 0.1, "beta": 0.5, "temperature": 0.1, "flip_reg": 1e-3}
        print("\n".join(cost_section(cfg, args.cost_rounds)))
        return
    seeds = [0] if args.quick else list(range(args.seeds))
    if args.quick:  # the smoke run: one interleaved cost round
        args.cost_rounds = 1
    epochs = 3 if args.quick else args.epochs
    rates = [0.0, 0.2] if args.quick else [0.0, 0.1, 0.2, 0.3, 0.4]
    env = environment()
    print(json.dumps(env), flush=True)
    t_all = time.perf_counter()
    cfg, tuning = tune(epochs, args.quick, args.tune_trials)
    fam = {name: f for name, (f, _) in methods(cfg, epochs).items()}
    lines = [f"# Denoising benchmark ({'quick' if args.quick else 'full'})", "",
             f"Command: `python benchmarks/denoise.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {env['date']}; Python {env['python']}, numpy {env['numpy']}, torch {env['torch']}, recfb {env['recfb']}  ",
             f"MF: 64 factors, Adam lr 0.005, batch 2048, L2 1e-5, {epochs} epochs; BCE with 4 uniform negatives, BPR with 1; "
             f"NBPO with 4 verified negatives and a rank-16 flip model. Seeds: {seeds}. Metrics @{K} on clean test positives, "
             "full ranking, train items excluded.  ",
             f"Settings chosen by recfb.tune on section 1's clean validation NDCG@{K} (seed 0; trial -> value): "
             f"{json.dumps(tuning)} -> {json.dumps(cfg)}", ""]

    print("[1] ml-100k natural noise", flush=True)
    res1 = run_protocol(ml100k_natural, seeds, cfg, epochs)
    lines += ["## 1. ml-100k, natural noise (train: all ratings; test: ratings >= 4)", ""] + table(res1, fam) + [""]

    print("[2] ModCloth (DeCA split)", flush=True)
    res2 = run_protocol(modcloth, seeds, cfg, epochs)
    lines += ["## 2. ModCloth, DeCA's split (train: all ratings; test: rating 5)", ""] + table(res2, fam) + [""]

    print("[3] injected noise", flush=True)
    curve = {}
    for rate in rates:
        print(f" rate {rate}", flush=True)
        names = None if rate in (0.0, 0.2) else [n for n in fam if n != "MF-NBPO"]
        curve[rate] = run_protocol(lambda s, r=rate: ml100k_injected(s, r), seeds, cfg, epochs, names)
    header = "| method | " + " | ".join(f"{r:.0%}" for r in rates) + " |"
    lines += ["## 3. ml-100k (ratings >= 4) with injected noise: NDCG@20 by noise rate", "", header,
              "|---|" + "---|" * len(rates)]
    for name in fam:
        cells = [ms(curve[r][name]["ndcg"]) if name in curve[r] else "" for r in rates]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Share of the NDCG@20 lost to 20% noise that each method recovers, "
              "(method@20% - plain@20%) / (plain@0% - plain@20%):", ""]
    recov = {}
    for name in fam:
        plain = "MF-BCE" if fam[name] == "bce" else "MF-BPR"
        if name == plain or name not in curve[0.2]:
            continue
        lost = np.mean(curve[0.0][plain]["ndcg"]) - np.mean(curve[0.2][plain]["ndcg"])
        recov[name] = (np.mean(curve[0.2][name]["ndcg"]) - np.mean(curve[0.2][plain]["ndcg"])) / lost
        lines.append(f"- {name}: {recov[name]:+.1%} (plain loses {lost:.4f})")
    best = max(recov, key=recov.get)
    lines += ["", f"Best: **{best}, {recov[best]:+.1%}** (target >= 30%).", ""]
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name in fam:
            rs = [r for r in rates if name in curve[r]]
            m = [np.mean(curve[r][name]["ndcg"]) for r in rs]
            sd = [np.std(curve[r][name]["ndcg"]) for r in rs]
            ax.errorbar([100 * r for r in rs], m, yerr=sd, marker="o", capsize=3, label=name,
                        linestyle="--" if fam[name] == "bpr" else "-")
        ax.set_xlabel("injected noise (% of each user's training rows)")
        ax.set_ylabel(f"NDCG@{K} (clean test)")
        ax.set_title(f"ml-100k, mean ± std over {len(seeds)} seeds")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        lines += [f"Plot: `{args.plot.name}`.", ""]

    print("[4] noise detection", flush=True)
    lines += ["## 4. Detecting the noise: synthetic world, 20% injected clicks (seed 0)", ""] + detection(cfg, epochs) + [""]

    lines += cost_section(cfg, args.cost_rounds)
    lines += [f"Total run time: {(time.perf_counter() - t_all) / 60:.1f} min.", ""]
    emit(lines, args.output)


if __name__ == "__main__":
    main()
