"""SASRec (BCE, gBCE, softmax) and BERT4Rec on the SASRec paper's Amazon Video Games file and
S3-Rec's Beauty, leave-one-out, under a per-model time budget.

    .venv/bin/python benchmarks/sequential.py --budget 20 --output benchmarks/sequential_results.md
    .venv/bin/python benchmarks/sequential.py --quick          # 1 minute per model, Video only
    # the paper reproduction (about 30 min on 2 cores): SASRec-BCE selected on sampled-100 NDCG@10
    .venv/bin/python benchmarks/sequential.py --models "BCE, 1" --datasets video --budget 30 \
        --eval-every 10 --threads 2 --valid-negatives 100

Protocol (Kang & McAuley 2018): each user's last item is test, the second-last validation;
histories for testing are train + validation. Validation NDCG@10 (full ranking, history
excluded, on a fixed sample of users) every ``--eval-every`` epochs drives early stopping and
the best epoch's weights are kept; training also stops at the time budget. Reported on the
test items:

- sampled: the test item ranked among 100 uniformly drawn items the user never interacted
  with (the paper's protocol), HR@10 and NDCG@10;
- full ranking over all items (history excluded), HR@10, NDCG@10, MRR@10.

Seconds per epoch and training positions per second are reported; the machine is a shared
2-core CPU.
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
PAPER = {"video": {"hr@10": 0.7410, "ndcg@10": 0.5360}}


def models(quick: bool):
    from recfb.models import BERT4Rec, SASRec, gSASRec

    common = dict(factors=50, max_len=50, num_blocks=2, num_heads=1, batch_size=128, device="auto",
                  iterations=1000, patience=3)
    return {
        # the paper's Amazon settings: dropout 0.5, lr 1e-3, one negative outside the history
        "SASRec (BCE, 1 negative)": lambda: SASRec(loss="bce", num_negatives=1, dropout=0.5, learning_rate=1e-3,
                                                   **common),
        "gSASRec (gBCE, 256 negatives, t=0.75)": lambda: gSASRec(num_negatives=256, gbce_t=0.75, dropout=0.5,
                                                                 learning_rate=1e-3, **common),
        "SASRec (full softmax)": lambda: SASRec(loss="softmax", dropout=0.5, learning_rate=1e-3, **common),
        "BERT4Rec": lambda: BERT4Rec(factors=64, max_len=50, num_blocks=2, num_heads=2, dropout=0.2, mask_prob=0.2,
                                     learning_rate=1e-3, batch_size=128, iterations=1000, patience=3, device="auto"),
    }


def run(name, make, dataset, budget_s, eval_every, quick, checkpoint=None, valid_negatives=None, patience=3):
    from recfb.data import concatenate
    from recfb.data.split import leave_one_out
    from recfb.datasets import load
    from recfb.evaluation import ranking_metrics, sampled_ranking_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load(dataset, data_dir=shared_data_dir(), quiet=True)
    train, valid, test = leave_one_out(data, by="row")
    rng = np.random.default_rng(0)
    valid_users = np.unique(valid.users)
    valid_users = np.sort(rng.choice(valid_users, size=min(5000, valid_users.size), replace=False))
    model = make().set_params(eval_every=eval_every, valid_negatives=valid_negatives, patience=patience)
    t0 = time.perf_counter()
    model.fit(train, valid_items=valid, show_progress=False, time_limit=budget_s, valid_users=valid_users,
              checkpoint=checkpoint, resume=checkpoint is not None)
    fit_s = time.perf_counter() - t0
    model.set_histories(concatenate([train, valid]))
    H = model.history_matrix()
    T = test.matrix
    full = ranking_metrics(model, H, T, k=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampled = sampled_ranking_metrics(model, H, T, n_negatives=100, k=10, seed=0)
    ep = [h["seconds"] for h in model.history_]
    pps = [h["examples_per_s"] for h in model.history_]
    return {"model": name, "dataset": dataset, "epochs": len(model.history_), "best_epoch": model.best_epoch_,
            "fit_s": fit_s, "epoch_s": float(np.median(ep)), "positions_per_s": float(np.median(pps)),
            "valid_curve": [round(h["valid"], 4) for h in model.history_ if "valid" in h],
            "sampled_hr@10": sampled["hit_rate@10"], "sampled_ndcg@10": sampled["ndcg@10"],
            "full_hr@10": full["hit_rate@10"], "full_ndcg@10": full["ndcg@10"], "full_mrr@10": full["mrr@10"],
            "n_users": full.n_users, "stopped_by": model.stopped_by_}


def main(argv=None):
    import torch

    import recfb

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=float, default=20.0, help="training minutes per model")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--datasets", nargs="*", default=["video", "beauty"])
    parser.add_argument("--models", nargs="*", help="substrings of model names to run")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--valid-negatives", type=int, help="validate by the sampled protocol with this many "
                        "uniform negatives (default: full ranking)")
    parser.add_argument("--patience", type=int, default=3, help="validations without improvement before stopping")
    parser.add_argument("--checkpoint-dir", type=Path, help="checkpoint each model here; a rerun resumes it")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = 60.0 if args.quick else args.budget * 60
    datasets = ["video"] if args.quick else args.datasets
    env = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
           "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)", "recfb": recfb.__version__,
           "device": "cuda" if torch.cuda.is_available() else "cpu"}
    print(json.dumps(env), flush=True)
    results = []
    for dataset in datasets:
        for name, make in models(args.quick).items():
            if args.models and not any(m.lower() in name.lower() for m in args.models):
                continue
            ckpt = None
            if args.checkpoint_dir:
                args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
                ckpt = args.checkpoint_dir / f"{dataset}-{''.join(c for c in name if c.isalnum())}.npz"
            r = run(name, make, dataset, budget, 1 if args.quick else args.eval_every, args.quick, ckpt,
                    args.valid_negatives, args.patience)
            results.append(r)
            print(json.dumps(r), flush=True)
    lines = ["# Sequential recommenders (leave-one-out)", "",
             f"Command: `python benchmarks/sequential.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {env['date']}; Python {env['python']}, torch {env['torch']}, recfb {env['recfb']}, "
             f"device {env['device']}  ",
             f"Per-model training budget: {budget / 60:.0f} min; validation NDCG@10 "
             f"({'full ranking' if args.valid_negatives is None else f'sampled, {args.valid_negatives} negatives'}) "
             f"on up to 5,000 users every {1 if args.quick else args.eval_every} epochs, patience {args.patience} "
             "validations.", ""]
    for dataset in datasets:
        rows = [r for r in results if r["dataset"] == dataset]
        if not rows:
            continue
        lines += [f"## {dataset}", "", "| model | sampled-100 HR@10 | sampled-100 NDCG@10 | full HR@10 | full NDCG@10 "
                  "| full MRR@10 | epochs (best) | s/epoch | positions/s | stopped by |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['model']} | {r['sampled_hr@10']:.4f} | {r['sampled_ndcg@10']:.4f} | {r['full_hr@10']:.4f} "
                         f"| **{r['full_ndcg@10']:.4f}** | {r['full_mrr@10']:.4f} | {r['epochs']} ({r['best_epoch']}) "
                         f"| {r['epoch_s']:.1f} | {r['positions_per_s']:,.0f} | {r['stopped_by']} |")
        if dataset in PAPER:
            p = PAPER[dataset]
            sas = next((r for r in rows if r["model"].startswith("SASRec (BCE")), None)
            if sas:
                lines += ["", f"SASRec paper (sampled-100): HR@10 {p['hr@10']}, NDCG@10 {p['ndcg@10']}; here "
                          f"{sas['sampled_hr@10']:.4f} ({sas['sampled_hr@10'] / p['hr@10'] - 1:+.1%}), "
                          f"{sas['sampled_ndcg@10']:.4f} ({sas['sampled_ndcg@10'] / p['ndcg@10'] - 1:+.1%}); target: within 3%."]
        lines += ["", "Validation curves (NDCG@10): " + "; ".join(f"{r['model']}: {r['valid_curve']}" for r in rows), ""]
    emit(lines, args.output)


if __name__ == "__main__":
    main()
