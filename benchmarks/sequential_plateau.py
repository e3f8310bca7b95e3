"""The curves behind ``iterations=None``'s stopping rule (recfb.models.sequential.schedule): a
model at its defaults trained for a fixed number of epochs on the internal holdout's data (the
last training item of HOLDOUT_FRACTION of the users held out), with two curves recorded every
``--eval-every`` epochs: the holdout's NDCG@10 (what the rule sees) and the leave-one-out
validation item's NDCG@10 ranked from the full training histories (what the rule should find;
the test item is never read). Each line of output is a JSON record; ``--replay`` applies the
current rule (:func:`recfb.models.sequential.schedule.replay`) to the recorded holdout curves.

    RECFB_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -u \\
        benchmarks/sequential_plateau.py --models gsasrec sasrec --datasets video beauty --epochs 200
    .venv/bin/python benchmarks/sequential_plateau.py --replay <that output>
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from defaults_sequential import USERS, _models, load_split


class _Stop(Exception):
    pass


def curves(make, train, valid, epochs, eval_every):
    """(holdout curve, validation curve, epochs at which both were taken, eval_every_ of the
    default rule, seconds) of ``make()`` trained ``epochs`` epochs on the holdout's data."""
    from recfb.evaluation import ranking_metrics
    from recfb.models.sequential import schedule
    from recfb.models.sequential.histories import pack_sequences

    full_indptr, full_items = pack_sequences(train.sequences("timestamp" if train.timestamps is not None else "row"))
    V = valid.with_id_space(train.user_map, train.item_map).matrix
    model = make(device="cpu")
    rec = {"epoch": [], "holdout": [], "valid": []}

    def record(epoch, logs):
        if "valid" not in logs:
            return
        kept = model.hist_indptr_, model.hist_items_  # the holdout's histories, restored below
        model.hist_indptr_, model.hist_items_ = full_indptr, full_items
        H = model._history_matrix()
        rec["valid"].append(round(ranking_metrics(model, H, V, k=10)["ndcg@10"], 5))
        model.hist_indptr_, model.hist_items_ = kept
        rec["epoch"].append(epoch)
        rec["holdout"].append(round(logs["valid"], 5))
        if epoch >= epochs:
            raise _Stop

    old = schedule.AUTO_MAX_EPOCHS, schedule.AUTO_PATIENCE
    schedule.AUTO_MAX_EPOCHS, schedule.AUTO_PATIENCE = epochs, 10 ** 6
    model.set_params(eval_every=eval_every, patience=10 ** 6)
    steps = int(np.ceil(np.sum(np.diff(full_indptr) >= model._min_length()) / model.batch_size))
    t0 = time.perf_counter()
    try:
        model.fit(train, show_progress=False, callbacks=[record])
    except _Stop:
        pass
    finally:
        schedule.AUTO_MAX_EPOCHS, schedule.AUTO_PATIENCE = old
    return rec, steps, time.perf_counter() - t0


def old_rule(scores, epochs, eval_every):
    """(chosen, stop) of the rule before WithinNoise: the first maximum, patience ``max(10,
    ceil(0.5 best_epoch / eval_every))`` validations from it (GrowingPatience)."""
    for i in range(len(scores)):
        best = int(np.argmax(scores[:i + 1]))
        if i - best >= max(10, int(np.ceil(0.5 * epochs[best] / eval_every))):
            return epochs[best], epochs[i]
    return epochs[int(np.argmax(scores))], epochs[-1]


def replay_lines(path):
    """Both rules on each recorded curve, at the cadence ``eval_every=None`` gives."""
    from recfb.models.sequential import schedule
    with open(path) as f:
        records = [json.loads(line) for line in f if line.startswith("{")]
    for r in records:
        every = schedule.auto_eval_every(r["sequences"], r["batch_size"])
        pts = [(e, h) for e, h in zip(r["epoch"], r["holdout"]) if e % every == 0]
        if not pts:
            continue
        epochs, scores = [p[0] for p in pts], [p[1] for p in pts]
        n_held = int(np.clip(round(schedule.HOLDOUT_FRACTION * r["sequences"]), schedule.HOLDOUT_MIN,
                             schedule.HOLDOUT_MAX))
        valid_at = dict(zip(r["epoch"], r["valid"]))
        vbest = max(r["valid"])
        out = [f"{r['model']:<8} {r['dataset']:<8} (validated every {every} epochs; valid max {vbest:.4f} at epoch "
               f"{r['epoch'][r['valid'].index(vbest)]})"]
        for label, (chosen, stop) in (("old", old_rule(scores, epochs, every)),
                                      ("new", schedule.replay(scores, epochs, n_held, every, r["steps_per_epoch"]))):
            out.append(f"{label}: epoch {chosen} (stop {stop}{'' if stop < epochs[-1] else ', end of record'}), "
                       f"valid there {valid_at[chosen]:.4f}")
        print("; ".join(out))


def main(argv=None):
    import torch
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gsasrec"])
    ap.add_argument("--datasets", nargs="+", default=["video", "beauty"])
    ap.add_argument("--users", type=int, default=USERS)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--replay", nargs="+")
    args = ap.parse_args(argv)
    if args.replay:
        for path in args.replay:
            replay_lines(path)
        return
    torch.set_num_threads(1)
    makers = _models()
    for name in args.datasets:
        train, valid = load_split(name, args.users)
        for m in args.models:
            rec, steps, seconds = curves(makers[m], train, valid, args.epochs, args.eval_every)
            n_seq = int(np.sum(np.diff(train.matrix.indptr) > 0))
            print(json.dumps({"model": m, "dataset": name, "users": args.users, "eval_every": args.eval_every,
                              "steps_per_epoch": steps, "sequences": n_seq, "batch_size": 128,
                              "seconds": round(seconds, 1), **rec}), flush=True)


if __name__ == "__main__":
    main()
