"""The denoisers at their defaults against their plain loss at its defaults (issue 13), each
model written as a user writes it, on the clean-test protocols of ``benchmarks/defaults.py
--families denoise`` (``_defaults_noisy.denoise_split``): NDCG@20 on the clean test part.

    RECFB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/denoise_defaults.py \\
        [--datasets ml-100k-noise modcloth synthetic-noise] [--seeds 0 1] [--nbpo] [--models bpr+PLD ...]

Prints one line per model and the ratios to the plain loss of each seed (figures:
benchmarks/RESULTS.md, "Defaults (issue 13)", the denoisers' update).
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch
from _defaults_noisy import DENOISE_DATASETS, denoise_split, ndcg

from recfb.denoise import PLD, RCE, TCE
from recfb.models import MF


def models(with_nbpo: bool) -> dict:
    rows = {"bce": lambda: MF(loss="bce"), "bce+TCE": lambda: MF(loss="bce", denoise=TCE()),
            "bce+RCE": lambda: MF(loss="bce", denoise=RCE()), "bpr": lambda: MF(loss="bpr"),
            "bpr+TCE": lambda: MF(loss="bpr", denoise=TCE()), "bpr+RCE": lambda: MF(loss="bpr", denoise=RCE()),
            "bpr+PLD": lambda: MF(loss="bpr", denoise=PLD()), "bce+PLD": lambda: MF(loss="bce", denoise=PLD())}
    if with_nbpo:  # pointwise, so compared with plain BCE
        rows["bce+NBPO"] = lambda: MF(loss="nbpo")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["ml-100k-noise"], choices=DENOISE_DATASETS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--nbpo", action="store_true", help="also MF(loss='nbpo') (Adam; slower)")
    p.add_argument("--models", nargs="+", default=None,
                   help="only these rows (names as printed, e.g. bpr bpr+PLD); the plain losses they need are added")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    for ds in args.datasets:
        for seed in args.seeds:
            train, _, test = denoise_split(ds, seed=seed)
            got = {}
            rows = models(args.nbpo)
            if args.models:
                keep = set(args.models) | {m.split("+")[0] for m in args.models}
                rows = {k: v for k, v in rows.items() if k in keep}
            for name, make in rows.items():
                t = time.perf_counter()
                m = make().fit(train, show_progress=False)
                got[name] = ndcg(m, train, test)
                print(ds, seed, name, m.optimizer_, round(got[name], 4), f"{time.perf_counter() - t:.1f}s", flush=True)
            print(ds, seed, "ratios", {k: round(v / got[k.split("+")[0]], 3) for k, v in got.items() if "+" in k},
                  flush=True)


if __name__ == "__main__":
    main()
