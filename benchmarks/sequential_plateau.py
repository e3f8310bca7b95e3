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

``--positions`` asks whether the holdout's targets are as predictable as the validation item's,
independently of any sequential model: MostPopular and ItemKNN (both fitted on the histories
before the target) rank the validation item, the last training item (what the holdout ranks)
and the one before it, for every user who has one:

    .venv/bin/python benchmarks/sequential_plateau.py --positions --datasets video beauty --users 1500 0
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


def positions(train, valid):
    """{target: (users, cold share, MostPopular NDCG@10, ItemKNN NDCG@10)} for the validation item
    ranked from the training histories (``valid``) and for the training histories' last and
    second-last items ranked from the items before them (``train -1``, ``train -2``)."""
    import scipy.sparse as sp

    from recfb.evaluation import ranking_metrics
    from recfb.models import ItemKNN, MostPopular
    from recfb.models.sequential.histories import pack_sequences

    indptr, items = pack_sequences(train.sequences("timestamp" if train.timestamps is not None else "row"))
    shape = (train.n_users, train.n_items)
    lengths = np.diff(indptr)
    row = np.repeat(np.arange(shape[0]), lengths)
    position = np.arange(items.size) - indptr[row]  # 0 = oldest
    V = valid.with_id_space(train.user_map, train.item_map).matrix
    out = {}
    for back in (0, 1, 2):  # items dropped from the end of each training history
        keep = position < lengths[row] - back
        hist = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (row[keep], items[keep])), shape=shape)
        hist.data[:] = 1.0
        if back == 0:
            target, users = V, np.flatnonzero(np.diff(V.indptr) > 0)
        else:
            users = np.flatnonzero(lengths > back)
            target = sp.csr_matrix((np.ones(users.size, np.float32), (users, items[indptr[users + 1] - back])),
                                   shape=shape)
        seen = np.asarray(hist.sum(axis=0)).ravel() > 0
        cold = float(np.mean(~seen[target.indices]))
        scores = [ranking_metrics(m.fit(hist, show_progress=False), hist, target, k=10, users=users)["ndcg@10"]
                  for m in (MostPopular(), ItemKNN())]
        out["valid" if back == 0 else f"train -{back}"] = (int(users.size), round(cold, 3), *map(float, scores))
    return out


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
    ap.add_argument("--users", type=int, nargs="+", default=[USERS], help="user subsample(s) (0: all users)")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--replay", nargs="+")
    ap.add_argument("--positions", action="store_true", help="the baselines on each target position (no training)")
    args = ap.parse_args(argv)
    if args.positions:
        print("| log | users | target | ranked users | cold share | MostPopular NDCG@10 | ItemKNN NDCG@10 |")
        print("|---|---|---|---|---|---|---|")
        for name in args.datasets:
            for n in args.users:
                train, valid = load_split(name, n)
                for target, (users, cold, pop, knn) in positions(train, valid).items():
                    print(f"| {name} | {n or 'all'} | {target} | {users} | {cold:.3f} | {pop:.4f} | {knn:.4f} |",
                          flush=True)
        return
    if args.replay:
        for path in args.replay:
            replay_lines(path)
        return
    torch.set_num_threads(1)
    makers = _models()
    for name in args.datasets:
        train, valid = load_split(name, args.users[0])
        for m in args.models:
            rec, steps, seconds = curves(makers[m], train, valid, args.epochs, args.eval_every)
            n_seq = int(np.sum(np.diff(train.matrix.indptr) > 0))
            print(json.dumps({"model": m, "dataset": name, "users": args.users[0], "eval_every": args.eval_every,
                              "steps_per_epoch": steps, "sequences": n_seq, "batch_size": 128,
                              "seconds": round(seconds, 1), **rec}), flush=True)


if __name__ == "__main__":
    main()
