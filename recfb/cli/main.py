"""``recfb`` / ``python -m recfb``: datasets, train, evaluate, recommend, bench, demo, export, serve, tune.

This module holds the one explicit name -> class table of the project (``MODELS``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from recfb.models import BPR, CML, EASE, MF, ImplicitALS, ImplicitBPR, ItemKNN, LightGCN, MostPopular
from recfb.models.sequential import BERT4Rec, SASRec, gSASRec
from recfb.utils.errors import DataError, DatasetNotFoundError, FormatError

MODELS = {
    "popular": MostPopular,
    "itemknn": ItemKNN,
    "ease": EASE,
    "mf": MF,
    "bpr": BPR,
    "cml": CML,
    "lightgcn": LightGCN,
    "implicit-als": ImplicitALS,
    "implicit-bpr": ImplicitBPR,
    "sasrec": SASRec,
    "gsasrec": gSASRec,
    "bert4rec": BERT4Rec,
}
# Sequential models learn from ordered Interactions (not a matrix): leave-one-out splits, and
# recfb.tune's "loo" protocol.
SEQUENTIAL = ("sasrec", "gsasrec", "bert4rec")

# Optional dependencies by import name -> the extra that installs them.
EXTRAS = {"torch_geometric": "graph", "fastapi": "serve", "uvicorn": "serve"}

# The demo's line-up: every model at its defaults, exactly as a user writes it (the defaults are
# chosen by benchmarks/defaults.py; benchmarks/RESULTS.md has the sweep).
DEMO_MODELS = {
    "popular": {},
    "itemknn": {},
    "ease": {},
    "bpr": {},
    "mf": {"loss": "bce"},
    "implicit-als": {},
    "implicit-bpr": {},
}

SPLITS = ("random", "leave-one-out", "temporal")


class CLIError(Exception):
    """A bad request from the command line: printed as one line, exit status 2."""


def _parse_params(pairs) -> dict:
    from recfb.serving.cli import parse_key_values
    try:
        return parse_key_values(pairs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _make_model(name: str, params: dict):
    if name not in MODELS:
        raise CLIError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    try:
        return cls(**params)
    except TypeError:
        raise CLIError(f"invalid parameter for {name}: {sorted(params)}; valid: {cls._param_names()}") from None


def _load_dataset(name: str, data_dir, quiet: bool):
    from recfb import datasets
    data = datasets.load(name, data_dir=data_dir, quiet=quiet)
    if not hasattr(data, "matrix"):  # e.g. coat, modcloth: use their training part
        data = data.train
    return data


def _split(data, how: str, test_fraction: float, seed: int):
    from recfb.data import split
    if how == "random":
        return split.random_holdout(data, test_fraction=test_fraction, seed=seed)
    if how == "leave-one-out":
        by = "timestamp" if data.timestamps is not None else "row"
        return split.leave_one_out(data, by=by, validation=False)
    if how == "temporal":
        return split.temporal(data, test_fraction=test_fraction)
    raise CLIError(f"unknown split {how!r}; choose one of {', '.join(SPLITS)}")


def _split_for(model: str, split):
    """The split a command uses: sequential models need leave-one-out (their default)."""
    if model in SEQUENTIAL:
        if split not in (None, "leave-one-out"):
            raise CLIError(f"{model} is a sequential model: it trains on each user's history and is tested on "
                           f"the next item; use --split leave-one-out (the default for it), not {split!r}")
        return "leave-one-out"
    return split or "random"


def _check_output(path) -> Path:
    """``-o`` must name a file in an existing folder (checked before any training)."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"-o {path} is a directory; give a file path, e.g. {path / 'model.npz'}")
    if not path.parent.is_dir():
        raise CLIError(f"-o {path}: the folder {path.parent} does not exist")
    return path


def _ks(values) -> tuple:
    ks = tuple(values)
    for k in ks:
        if k <= 0:
            raise CLIError(f"k == {k}, must be > 0")
    return ks


def _log(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr)


# ----------------------------------------------------------------------------- commands
def cmd_datasets(args) -> int:
    from recfb import datasets
    if args.action == "list":
        for name in datasets.list_datasets():
            print(name)
        return 0
    if not args.name:
        raise CLIError("datasets info needs a dataset name, e.g. `recfb datasets info ml-100k`")
    info = datasets.info(args.name)
    print(info if isinstance(info, str) else json.dumps(info, indent=2, default=str))
    return 0


def cmd_train(args) -> int:
    output = _check_output(args.output)
    model = _make_model(args.model, _parse_params(args.param))
    split_name = _split_for(args.model, args.split)
    data = _load_dataset(args.dataset, args.data_dir, args.quiet)
    train, _ = _split(data, split_name, args.test_fraction, args.seed)
    comm, fit_kwargs = _distributed_fit(model, args)
    t0 = time.perf_counter()
    model.fit(train if args.model in SEQUENTIAL else train.matrix, show_progress=not args.quiet and comm.is_main,
              **fit_kwargs)
    fit_s = time.perf_counter() - t0
    args.output = output
    meta = {"dataset": args.dataset, "split": split_name, "test_fraction": args.test_fraction,
            "seed": args.seed, "model": args.model, "fit_seconds": round(fit_s, 3)}
    if comm.is_main:  # one output file, one message: rank 0 writes
        path = model.save(args.output, metadata=meta)
        print(f"trained {model!r} on {train} in {fit_s:.2f} s"
              f"{f' on {comm.world_size} ranks' if comm.enabled else ''}; saved to {path}")
    comm.barrier()
    comm.close()
    return 0


def _distributed_fit(model, args):
    """``--distributed`` (torchrun): the Comm and ``fit(distributed=True)``; otherwise no-ops."""
    from recfb.distributed import get_comm
    if not getattr(args, "distributed", False):
        return get_comm(False), {}
    import inspect
    if "distributed" not in inspect.signature(model.fit).parameters:
        raise CLIError(f"--distributed: {type(model).__name__}.fit does not take distributed= (yet)")
    return get_comm(True), {"distributed": True}


def cmd_evaluate(args) -> int:
    import recfb
    from recfb.evaluation import ranking_metrics
    model = recfb.load(args.model)
    meta = getattr(model, "metadata_", {})
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise CLIError("the model file names no dataset; pass --dataset")
    split_name = args.split or meta.get("split", "random")
    seed = args.seed if args.seed is not None else meta.get("seed", 0)
    fraction = args.test_fraction if args.test_fraction is not None else meta.get("test_fraction", 0.2)
    data = _load_dataset(dataset, args.data_dir, args.quiet)
    train, test = _split(data, split_name, fraction, seed)
    if model.n_items_ != data.n_items:
        raise CLIError(f"the model has {model.n_items_} items but {dataset} has {data.n_items}")
    _check_same_split(meta, data, test, dataset, split_name, fraction, seed, args.allow_train_test_overlap)
    res = ranking_metrics(model, train.matrix, test.matrix, k=_ks(args.k), show_progress=not args.quiet)
    out = {k: round(float(v), 6) for k, v in res.items()}
    print(json.dumps(out, indent=2))
    return 0


def _check_same_split(meta, data, test, dataset, split_name, fraction, seed, allow: bool) -> None:
    """Refuse to evaluate on a split other than the one the model was trained on: its test part
    would hold the model's own training interactions (inflated metrics), unless ``allow``."""
    if "split" not in meta:  # a model saved outside `recfb train`: nothing recorded to compare with
        return
    recorded = {"dataset": meta.get("dataset"), "split": meta.get("split"), "seed": meta.get("seed"),
                "test_fraction": meta.get("test_fraction")}
    requested = {"dataset": dataset, "split": split_name, "seed": seed, "test_fraction": fraction}
    if recorded["split"] == "leave-one-out":  # seed and fraction do not change that split
        recorded.update(seed=None, test_fraction=None)
    if requested["split"] == "leave-one-out":
        requested.update(seed=None, test_fraction=None)
    differ = {k: (recorded[k], requested[k]) for k in recorded if recorded[k] != requested[k]}
    if not differ or allow:
        return
    overlap = "an unknown number of"
    if recorded["dataset"] == dataset and recorded["split"] in SPLITS:
        rec_train, _ = _split(data, recorded["split"], meta.get("test_fraction", 0.2), meta.get("seed", 0))
        overlap = f"{test.matrix.multiply(rec_train.matrix).nnz:,} of the {test.matrix.nnz:,}"
    what = ", ".join(f"{k} {a!r} (recorded) vs {b!r}" for k, (a, b) in differ.items())
    raise CLIError(f"this split differs from the one the model was trained on ({what}): {overlap} test "
                   "interactions were in its training data, so the metrics would be inflated. Drop the option "
                   "to use the recorded split, or pass --allow-train-test-overlap to evaluate anyway")


def cmd_recommend(args) -> int:
    import recfb
    model = recfb.load(args.model)
    dataset = args.dataset or getattr(model, "metadata_", {}).get("dataset")
    if not dataset:
        raise CLIError("the model file names no dataset; pass --dataset")
    data = _load_dataset(dataset, args.data_dir, args.quiet)
    if args.N <= 0:
        raise CLIError(f"N == {args.N}, must be > 0")
    users = np.array([_coerce_id(u, data.user_ids) for u in args.user])
    try:
        internal = data.user_map.to_internal(users)
    except KeyError as exc:
        raise CLIError(str(exc).strip('"')) from None
    ids, scores = model.recommend(internal, data.matrix[internal], N=args.N)
    names = _item_names(dataset, args.data_dir)
    for u, row, srow in zip(users, ids, scores):
        print(f"user {u}:")
        for rank, (i, s) in enumerate(zip(row, srow), 1):
            if i < 0:
                break
            ext = data.item_ids[i]
            label = f"  {names.get(ext, '')}" if names else ""
            print(f"  {rank:2d}. item {ext} (score {s:.4f}){label}")
    return 0


def _coerce_id(raw: str, ids: np.ndarray):
    if ids.dtype.kind in "iu":
        try:
            return int(raw)
        except ValueError:
            raise CLIError(f"user id {raw!r} is not an integer; this dataset's user ids are integers") from None
    return raw


def _item_names(dataset, data_dir) -> dict:
    try:
        from recfb import datasets
        loader = getattr(datasets, "load_item_names", None)
        return loader(dataset, data_dir=data_dir) if loader else {}
    except Exception:  # names are a nicety; never fail a recommendation over them
        return {}


def run_leaderboard(data, models: dict, k=(10, 20), seed: int = 0, quiet: bool = False, out=None, extra=()):
    """Fit each model on a per-user random 80/20 split of ``data``; print and return the table
    (``extra``: beyond-accuracy metrics of ``ranking_metrics``, as columns at the first ``k``)."""
    from recfb.data import split
    from recfb.evaluation import ranking_metrics
    out = sys.stdout if out is None else out
    train, test = split.random_holdout(data, test_fraction=0.2, seed=seed)
    X, T = train.matrix, test.matrix
    rows = []
    fitted = {}
    for name, params in models.items():
        model = MODELS[name](**params)
        if not quiet:
            print(f"fitting {model!r} ...", file=sys.stderr)
        t0 = time.perf_counter()
        model.fit(X, show_progress=False)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = ranking_metrics(model, X, T, k=k, extra=extra)
        eval_s = time.perf_counter() - t0
        rows.append((name, res, fit_s, eval_s))
        fitted[name] = model
    k0 = k[0]
    cols = [f"ndcg@{k0}", f"recall@{k0}", f"precision@{k0}", f"map@{k0}", f"mrr@{k0}", f"hit_rate@{k0}",
            f"coverage@{k0}"] + [f"ndcg@{kk}" for kk in k[1:]] + [f"{m}@{k0}" for m in extra if m != "coverage"]
    header = f"{'model':<14}" + "".join(f"{c:>13}" for c in cols) + f"{'fit s':>9}{'eval s':>9}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for name, res, fit_s, eval_s in sorted(rows, key=lambda r: -r[1][f"ndcg@{k0}"]):
        print(f"{name:<14}" + "".join(f"{res[c]:>13.4f}" for c in cols) + f"{fit_s:>9.2f}{eval_s:>9.2f}", file=out)
    return rows, fitted, train, test


def cmd_bench(args) -> int:
    data = _load_dataset(args.dataset, args.data_dir, args.quiet)
    names = args.models or list(DEMO_MODELS)
    for n in names:
        if n not in MODELS:
            raise CLIError(f"unknown model {n!r}; choose from {', '.join(MODELS)}")
    print(f"dataset {args.dataset}: {data}")
    run_leaderboard(data, {n: DEMO_MODELS.get(n, {}) for n in names}, k=_ks(args.k), seed=args.seed, quiet=args.quiet,
                    extra=tuple(args.extra or ()))
    return 0


def _tune_split(data, how: str, test_fraction: float, valid_fraction: float, seed: int):
    """train, valid, test for `recfb tune`: the valid part tunes, the test part only reports."""
    from recfb.data import split
    if how == "random":
        return split.random_holdout(data, test_fraction=test_fraction, seed=seed, validation_fraction=valid_fraction)
    if how == "leave-one-out":
        by = "timestamp" if data.timestamps is not None else "row"
        return split.leave_one_out(data, by=by, validation=True)
    if how == "temporal":
        rest, test = split.temporal(data, test_fraction=test_fraction)
        train, valid = split.temporal(rest, test_fraction=valid_fraction / (1 - test_fraction))
        return train, valid, test
    raise CLIError(f"unknown split {how!r}; choose one of {', '.join(SPLITS)}")


def cmd_tune(args) -> int:
    from recfb import tune
    from recfb.data import concatenate
    from recfb.evaluation import ranking_metrics
    if args.model not in MODELS:
        raise CLIError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    if not 0 < args.valid_fraction < 1:
        raise CLIError(f"--valid-fraction == {args.valid_fraction}, must be in (0, 1)")
    cls = MODELS[args.model]
    output = _check_output(args.output)
    params = _parse_params(args.param)
    model = _make_model(args.model, params)
    sequential = args.model in SEQUENTIAL
    args.split = _split_for(args.model, args.split)
    protocol = args.protocol or ("loo" if sequential else "full")
    if sequential and protocol != "loo":
        raise CLIError(f"{args.model} is a sequential model: tune it with --protocol loo (its default), not {protocol!r}")
    if not sequential and protocol == "loo":
        raise CLIError(f"--protocol loo is for sequential models ({', '.join(SEQUENTIAL)}), not {args.model}")
    # --param fixes a parameter even at its default value
    space = {k: v for k, v in getattr(cls, "search_space", {}).items() if k not in params}
    data = _load_dataset(args.dataset, args.data_dir, args.quiet)
    train, valid, test = _tune_split(data, args.split, args.test_fraction, args.valid_fraction, args.seed)
    _log(args, f"tuning {model!r} on {args.dataset}: train {len(train)}, valid {len(valid)}, test {len(test)} "
               f"({args.split} split, seed {args.seed}); {args.metric} on valid")
    t0 = time.perf_counter()
    try:
        result = tune.search(model, train if sequential else train.matrix, valid if sequential else valid.matrix,
                             metric=args.metric, n_trials=args.trials, timeout=args.timeout, space=space,
                             seed=args.seed, storage=args.storage, study_name=args.study_name, protocol=protocol,
                             show_progress=not args.quiet)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from None
    seconds = time.perf_counter() - t0
    study = result.study
    states = [t.state.name for t in study.trials]
    print(f"{len(states)} trials in the study ({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
          f"{states.count('FAIL')} failed); this run {seconds:.1f} s")
    print(f"best parameters: {json.dumps(result.best_params, default=str)}")
    print(f"best valid {result.metric}: {result.best_value:.4f}")
    done = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)[:args.top]
    names = sorted({n for t in done for n in t.params})
    header = f"{'trial':>6} {result.metric:>12}" + "".join(f" {n:>16}" for n in names)
    print(header)
    print("-" * len(header))
    for t in done:
        cells = "".join(f" {_cell(t.params.get(n)):>16}" for n in names)
        print(f"{t.number:>6} {t.value:>12.4f}{cells}")
    seen = concatenate([train, valid]).matrix
    res = ranking_metrics(result.best_model, seen, test.matrix, k=(10, 20))
    print("test (refitted best model, train + valid items excluded): "
          + ", ".join(f"{k} {res[k]:.4f}" for k in ("ndcg@10", "recall@10", "ndcg@20", "recall@20")))
    meta = {"dataset": args.dataset, "split": args.split, "test_fraction": args.test_fraction, "seed": args.seed,
            "model": args.model, "tuned": {"metric": result.metric, "valid": result.best_value,
                                            "params": result.best_params, "trials": len(states),
                                            "valid_fraction": args.valid_fraction}}
    path = result.best_model.save(output, metadata=meta)
    print(f"saved the refitted model to {path}")
    if args.plot:
        tune.plot(result, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def cmd_demo(args) -> int:
    from recfb import datasets
    try:
        data = datasets.load("ml-100k", data_dir=args.data_dir, download=False, quiet=args.quiet)
        name = "ml-100k"
        print(f"Dataset: MovieLens 100K found by the lookup ({data}); every rating counts as a positive.")
    except DatasetNotFoundError as exc:
        world = datasets.make_world(seed=0)
        data, name = world.clicks, "synthetic"
        print(f"Dataset: ml-100k not found ({str(exc).splitlines()[0]}); "
              f"using the seeded synthetic world instead ({data}).")
    print("Protocol: per-user random 80/20 holdout (seed 0), full ranking, train items excluded.\n")
    rows, fitted, train, test = run_leaderboard(data, DEMO_MODELS, k=(10, 20), seed=0, quiet=args.quiet)
    best_name = max(rows, key=lambda r: r[1]["ndcg@10"])[0]
    best = fitted[best_name]
    names = _item_names(name, args.data_dir) if name != "synthetic" else {}
    users = np.arange(3)
    ids, scores = best.recommend(users, train.matrix[users], N=5)
    print(f"\nTop-5 from the best model ({best_name}) for a few users:")
    for u, row in zip(users, ids):
        items = [str(names.get(data.item_ids[i], data.item_ids[i])) for i in row if i >= 0]
        print(f"  user {data.user_ids[u]}: " + "; ".join(items))
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recfb", description="Recommenders from implicit feedback.",
                                epilog="Example: recfb train --dataset ml-100k --model itemknn -o knn.npz && "
                                       "recfb evaluate --model knn.npz")
    _global_options(p, None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("datasets", help="list known datasets or show one's card")
    d.add_argument("action", choices=("list", "info"))
    d.add_argument("name", nargs="?", help="dataset name (for info)")
    d.set_defaults(func=cmd_datasets)

    def split_args(sp, defaults=True):
        sp.add_argument("--split", choices=SPLITS, default=None,
                        help="how to hold out test data (default: random per-user 80/20; leave-one-out for "
                             "sequential models)" if defaults else "default: the split the model was trained on")
        sp.add_argument("--test-fraction", type=float, default=0.2 if defaults else None)
        sp.add_argument("--seed", type=int, default=0 if defaults else None)

    t = sub.add_parser("train", help="fit a model on a dataset's training split and save it")
    t.add_argument("--dataset", required=True, help="a name from `recfb datasets list`")
    t.add_argument("--model", required=True, choices=list(MODELS))
    t.add_argument("--param", action="append", metavar="KEY=VALUE", help="model parameter (repeatable)")
    t.add_argument("--output", "-o", required=True, help="where to write the model (.npz)")
    t.add_argument("--distributed", action="store_true",
                   help="train across the processes of `torchrun --nproc_per_node=N -m recfb train ...` "
                        "(torch.distributed; rank 0 shows progress and writes --output)")
    split_args(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="ranking metrics of a saved model on its test split")
    e.add_argument("--model", required=True, help="a file written by `recfb train`")
    e.add_argument("--dataset", help="default: the dataset the model was trained on")
    e.add_argument("--k", type=int, nargs="+", default=[10, 20])
    e.add_argument("--allow-train-test-overlap", action="store_true",
                   help="evaluate on a split other than the model's own, although its test part then holds "
                        "training interactions (inflated metrics)")
    split_args(e, defaults=False)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("recommend", help="top-N items for users (external ids)")
    r.add_argument("--model", required=True)
    r.add_argument("--dataset", help="default: the dataset the model was trained on")
    r.add_argument("--user", required=True, nargs="+", help="external user ids")
    r.add_argument("-N", type=int, default=10)
    r.set_defaults(func=cmd_recommend)

    b = sub.add_parser("bench", help="leaderboard of several models on one dataset")
    b.add_argument("--dataset", default="ml-100k")
    b.add_argument("--models", nargs="+", help=f"default: {' '.join(DEMO_MODELS)}")
    b.add_argument("--k", type=int, nargs="+", default=[10, 20])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--extra", nargs="+", choices=("novelty", "gini", "coverage", "avg_popularity"),
                   help="beyond-accuracy metrics to add as columns (recfb.evaluation.diversity_metrics)")
    b.set_defaults(func=cmd_bench)

    u = sub.add_parser("tune", help="tune a model's hyper-parameters on a validation split (Optuna), save the best")
    u.add_argument("--dataset", required=True, help="a name from `recfb datasets list`")
    u.add_argument("--model", required=True, choices=list(MODELS))
    u.add_argument("--trials", type=int, default=30, help="trials in this run (default 30)")
    u.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    u.add_argument("--storage", default=None,
                   help="Optuna storage (sqlite:///study.db, or a journal file path): resume, or tune in parallel")
    u.add_argument("--study-name", default=None, help="default recfb-<Model>-<metric>")
    u.add_argument("--metric", default="ndcg@10", help="validation metric to maximise (default ndcg@10)")
    u.add_argument("--protocol", choices=("full", "sampled", "loo"), default=None,
                   help="validation protocol (default: full; loo for sequential models)")
    u.add_argument("--param", action="append", metavar="KEY=VALUE", help="fixed model parameter (repeatable)")
    u.add_argument("--valid-fraction", type=float, default=0.1, help="share of each user's rows for validation")
    u.add_argument("--top", type=int, default=5, help="best trials shown")
    u.add_argument("--plot", default=None, metavar="FILE.png", help="optimisation history + parameter importances")
    u.add_argument("--output", "-o", required=True, help="where to write the refitted best model (.npz)")
    split_args(u)
    u.set_defaults(func=cmd_tune)

    from recfb.serving.cli import add_export_parser, add_serve_parser
    add_export_parser(sub)
    add_serve_parser(sub)

    m = sub.add_parser("demo", help="the main job: leaderboard on the default dataset, then a few recommendations")
    m.set_defaults(func=cmd_demo)
    for command in sub.choices.values():  # global options work after the sub-command too
        _global_options(command, argparse.SUPPRESS)
    return p


def _global_options(parser, default) -> None:
    """``--quiet`` and ``--data-dir``; on sub-commands with a SUPPRESS default, so that giving
    them before the sub-command is not undone by the sub-command's own default."""
    parser.add_argument("--quiet", "-q", action="store_true", default=default or False,
                        help="no progress bars or log lines")
    parser.add_argument("--data-dir", default=default,
                        help="dataset folder (default: $RECFB_DATA_DIR, then the cache); must exist")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.data_dir is not None and not Path(args.data_dir).is_dir():
            raise CLIError(f"--data-dir {args.data_dir} does not exist (or is not a folder)")
        return args.func(args)
    except ImportError as exc:  # an optional dependency: name the extra that installs it
        module = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(module)
        hint = f"pip install recfb[{extra}]" if extra else f"pip install {module or 'the missing package'}"
        return _fail(f"this needs the optional package {module or exc}: {hint}")
    except (CLIError, DataError, FormatError, DatasetNotFoundError, OSError, KeyError, ValueError,
            TypeError, MemoryError, RuntimeError) as exc:  # RuntimeError: torch/faiss refusing an argument
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)  # KeyError quotes
        return _fail(text or type(exc).__name__)


def _fail(message: str) -> int:
    """One line on stderr, exit status 2."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    print(f"recfb: error: {'; '.join(lines)}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
