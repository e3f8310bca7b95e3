"""Fit one leaderboard row in a fresh process and write its top-k lists (the child half of
``benchmarks/leaderboard.py``).

The leaderboard runs this script once per row: with recfb's ``.venv`` for the recfb and implicit
rows, with the separate ``.venv-peers`` (``pip install rectools cornac``) for the RecTools and Cornac
rows. It only imports numpy and scipy at module level; each backend imports its own library, so
the script runs in either environment and recfb is never installed beside the peers.

    python benchmarks/_peer_runner.py --train train.npz --model cornac.BPR --k 20 --out DIR \\
        [--threads 2] [--warmup-users 64] [--repeats 3]
    python benchmarks/_peer_runner.py --versions        # JSON of this interpreter's library versions

Input ``train.npz``: ``indptr``, ``indices``, ``shape`` of a binary CSR (users x items), read
with ``allow_pickle=False``. Output in ``DIR``: ``topk.npz`` with ``ids`` (int32, users x k,
``-1`` where the model has fewer than ``k`` unseen items) and ``scores`` (float32, ``-inf`` at
those places), and ``result.json`` with ``fit_seconds`` (the model's fit call only: no data
conversion, no recommendation), ``warmup_seconds``, ``recommend_seconds``, ``peak_rss_mib``,
``versions`` and the model as written. Every list excludes the user's train items.

Before the timed fit, the same model (a new instance at the same parameters) is fitted once on
the first ``--warmup-users`` users' rows, so that one-off costs (numba JIT compilation, lazy
library initialisation) are not in the timed fit; ``warmup_seconds`` reports what it cost.
With ``--repeats N`` the full fit is timed N times, each on a new instance, and ``fit_seconds``
is their median (``fit_seconds_all`` lists them): on a small log one fit takes about a second, and
single timings of the same call varied by 1.5-3x on this 2-core machine. The last fit's model
recommends.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

RECOMMEND_BATCH = 1024  # users per recommend call when the model takes batches

# key -> (library, the model as a user writes it). The leaderboard's --models picks from these.
RECFB_MODELS = {
    "MostPopular": "MostPopular()",
    "ItemKNN": "ItemKNN()",
    "EASE": "EASE()",
    "BPR": "BPR()",
    "MF-bce": 'MF(loss="bce")',
    "CML": "CML()",
    "LightGCN": "LightGCN()",
}
IMPLICIT_MODELS = {
    "implicit.BPR": "BayesianPersonalizedRanking()",
    "implicit.ALS": "AlternatingLeastSquares()",
}
RECTOOLS_MODELS = {
    "rectools.Popular": "PopularModel()",
    "rectools.EASE": "EASEModel()",
    "rectools.PureSVD": "PureSVDModel()",
    "rectools.ALS": "ImplicitALSWrapperModel(AlternatingLeastSquares())",
    "rectools.BPR": "ImplicitBPRWrapperModel(BayesianPersonalizedRanking())",
    "rectools.ItemKNN": "ImplicitItemKNNWrapperModel(CosineRecommender())",
}
CORNAC_MODELS = {
    "cornac.BPR": "BPR()",
    "cornac.EASE": "EASE()",
    "cornac.BPR-ref": "BPR(k=64, max_iter=100, learning_rate=0.01, lambda_reg=0.01)",
}
ALL_MODELS = {**RECFB_MODELS, **IMPLICIT_MODELS, **RECTOOLS_MODELS, **CORNAC_MODELS}


def library_of(key: str) -> str:
    """``"recfb"``, ``"implicit"``, ``"rectools"`` or ``"cornac"`` for a model key."""
    if key in RECFB_MODELS:
        return "recfb"
    if key not in ALL_MODELS:
        raise ValueError(f"model {key!r} is unknown; expected one of {', '.join(ALL_MODELS)}.")
    return key.split(".", 1)[0]


# ---------------------------------------------------------------------------- data and top-k

def read_train(path) -> sp.csr_matrix:
    """The binary train CSR written by the leaderboard (arrays only, no pickle)."""
    with np.load(path, allow_pickle=False) as f:
        indptr, indices, shape = f["indptr"], f["indices"], tuple(int(s) for s in f["shape"])
    return sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=shape)


def write_train(path, X) -> None:
    """Write the structure of CSR ``X`` for :func:`read_train`."""
    X = sp.csr_matrix(X)
    np.savez(path, indptr=X.indptr.astype(np.int64), indices=X.indices.astype(np.int32),
             shape=np.asarray(X.shape, np.int64))


def topk_from_scores(scores: np.ndarray, seen: sp.csr_matrix, k: int):
    """Top ``k`` of each row of dense ``scores`` (users x items) with ``seen`` items excluded.

    Returns ``(ids int32, scores float32)``, best first; positions past a user's unseen items
    are ``-1`` / ``-inf``.
    """
    scores = np.array(scores, dtype=np.float32)  # a copy: the seen items are overwritten
    n_rows, n_items = scores.shape
    seen = sp.csr_matrix(seen)
    rows = np.repeat(np.arange(n_rows), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    k_eff = min(k, n_items)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int32)
    top = np.take_along_axis(part_scores, order, axis=1)
    return pad_lists(ids, top, k)


def pad_lists(ids: np.ndarray, scores: np.ndarray, k: int):
    """Mark filtered positions (score ``-inf`` or ``<= -FLT_MAX``, as implicit returns them) with
    id ``-1`` / score ``-inf`` and pad to ``k`` columns."""
    ids = np.asarray(ids, np.int32).copy()
    scores = np.asarray(scores, np.float32).copy()
    empty = ~(scores > -np.finfo(np.float32).max) | (ids < 0)
    ids[empty], scores[empty] = -1, -np.inf
    if ids.shape[1] < k:
        pad = ((0, 0), (0, k - ids.shape[1]))
        ids = np.pad(ids, pad, constant_values=-1)
        scores = np.pad(scores, pad, constant_values=-np.inf)
    return ids[:, :k], scores[:, :k]


def recommend_all(model, X: sp.csr_matrix, k: int):
    """Top ``k`` unseen items of every user from a model with implicit's batch ``recommend``
    (recfb and implicit models): ``(ids, scores)`` as :func:`pad_lists` gives them."""
    n_users = X.shape[0]
    ids = np.full((n_users, k), -1, np.int32)
    scores = np.full((n_users, k), -np.inf, np.float32)
    n = min(k, X.shape[1])
    for start in range(0, n_users, RECOMMEND_BATCH):
        users = np.arange(start, min(n_users, start + RECOMMEND_BATCH), dtype=np.int32)
        i, s = model.recommend(users, X[users], N=n, filter_already_liked_items=True)
        ids[users], scores[users] = pad_lists(np.atleast_2d(i), np.atleast_2d(s), k)
    return ids, scores


# ---------------------------------------------------------------------------- backends
# Each backend is (prepare(X) -> data, make() -> model, fit(model, data), recommend(model, data, k)).

class _Backend:
    def __init__(self, key, threads):
        self.key, self.threads = key, threads

    def prepare(self, X):
        return X

    def fit(self, model, data):
        model.fit(data)

    def context(self):
        return contextlib.nullcontext()


class _Recfb(_Backend):
    def make(self):
        from recfb.models import BPR, CML, EASE, MF, ItemKNN, LightGCN, MostPopular
        return {"MostPopular": MostPopular, "ItemKNN": ItemKNN, "EASE": EASE, "BPR": BPR,
                "MF-bce": lambda: MF(loss="bce"), "CML": CML, "LightGCN": LightGCN}[self.key]()

    def fit(self, model, data):
        model.fit(data, show_progress=False)

    def recommend(self, model, data, k):
        return recommend_all(model, data, k)


def _implicit_blas_limit():
    """implicit asks for single-threaded BLAS (it warns otherwise); its own threads do the work."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1, "blas")


def _implicit_threads(threads):
    # implicit's default num_threads=0 means every core; keep the default when that is --threads
    return {} if threads == os.cpu_count() else {"num_threads": threads}


class _Implicit(_Backend):
    def make(self):
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking
        cls = {"implicit.BPR": BayesianPersonalizedRanking, "implicit.ALS": AlternatingLeastSquares}[self.key]
        return cls(**_implicit_threads(self.threads))

    def context(self):
        return _implicit_blas_limit()

    def fit(self, model, data):
        model.fit(data, show_progress=False)

    def recommend(self, model, data, k):
        return recommend_all(model, data, k)


class _RecTools(_Backend):
    """RecTools models on a ``Dataset`` whose external ids are the CSR's row / column numbers."""

    def make(self):
        from rectools import models as rm
        if self.key in ("rectools.ALS", "rectools.BPR", "rectools.ItemKNN"):
            from implicit.als import AlternatingLeastSquares
            from implicit.bpr import BayesianPersonalizedRanking
            from implicit.nearest_neighbours import CosineRecommender
            extra = _implicit_threads(self.threads)
            if self.key == "rectools.ALS":
                return rm.ImplicitALSWrapperModel(AlternatingLeastSquares(**extra))
            if self.key == "rectools.BPR":
                return rm.ImplicitBPRWrapperModel(BayesianPersonalizedRanking(**extra))
            return rm.ImplicitItemKNNWrapperModel(CosineRecommender(**extra))
        return {"rectools.Popular": rm.PopularModel, "rectools.EASE": rm.EASEModel,
                "rectools.PureSVD": rm.PureSVDModel}[self.key]()

    def context(self):
        return _implicit_blas_limit() if self.key in ("rectools.ALS", "rectools.BPR") else contextlib.nullcontext()

    def prepare(self, X):
        import pandas as pd
        from rectools import Columns
        from rectools.dataset import Dataset
        coo = X.tocoo()
        frame = pd.DataFrame({Columns.User: coo.row.astype(np.int64), Columns.Item: coo.col.astype(np.int64),
                              Columns.Weight: np.ones(coo.nnz, np.float32),
                              Columns.Datetime: pd.Timestamp("2000-01-01")})
        return {"dataset": Dataset.construct(frame), "shape": X.shape}

    def fit(self, model, data):
        model.fit(data["dataset"])

    def recommend(self, model, data, k):
        from rectools import Columns
        n_users = data["shape"][0]
        users = np.unique(data["dataset"].user_id_map.external_ids)
        reco = model.recommend(users=users, dataset=data["dataset"], k=k, filter_viewed=True, add_rank_col=True)
        ids = np.full((n_users, k), -1, np.int32)
        scores = np.full((n_users, k), -np.inf, np.float32)
        u = reco[Columns.User].to_numpy(np.int64)
        r = reco[Columns.Rank].to_numpy(np.int64) - 1
        ids[u, r] = reco[Columns.Item].to_numpy(np.int64)
        scores[u, r] = reco[Columns.Score].to_numpy(np.float32)
        return ids, scores


class _Cornac(_Backend):
    """Cornac models on a ``cornac.data.Dataset`` built from the CSR's (row, column, 1) triples;
    scores come from the model's public ``score(user_idx)``, train items masked here."""

    def make(self):
        from cornac.models import BPR, EASE
        if self.key == "cornac.BPR":
            return BPR()
        if self.key == "cornac.EASE":
            return EASE()
        return BPR(k=64, max_iter=100, learning_rate=0.01, lambda_reg=0.01)

    def prepare(self, X):
        from cornac.data import Dataset
        coo = X.tocoo()
        train_set = Dataset.from_uir(list(zip(coo.row.tolist(), coo.col.tolist(), [1.0] * coo.nnz)))
        # cornac index -> CSR row / column
        user_of = np.empty(len(train_set.uid_map), np.int64)
        user_of[list(train_set.uid_map.values())] = list(train_set.uid_map.keys())
        item_of = np.empty(len(train_set.iid_map), np.int64)
        item_of[list(train_set.iid_map.values())] = list(train_set.iid_map.keys())
        return {"train_set": train_set, "user_of": user_of, "item_of": item_of, "shape": X.shape}

    def fit(self, model, data):
        with contextlib.redirect_stdout(sys.stderr):  # cornac's verbose defaults print to stdout
            model.fit(data["train_set"])

    def recommend(self, model, data, k):
        seen = data["train_set"].matrix  # cornac's own ids, the items the model knows
        n_users = data["shape"][0]
        ids = np.full((n_users, k), -1, np.int32)
        scores = np.full((n_users, k), -np.inf, np.float32)
        for start in range(0, seen.shape[0], RECOMMEND_BATCH):
            batch = np.arange(start, min(seen.shape[0], start + RECOMMEND_BATCH))
            # cornac scores one user per call (its public API); masking and top-k are batched
            block = np.stack([np.asarray(model.score(int(u)), np.float32).ravel() for u in batch])
            i, s = topk_from_scores(block, seen[batch], k)
            rows = data["user_of"][batch]
            ids[rows] = np.where(i >= 0, data["item_of"][np.maximum(i, 0)], -1)
            scores[rows] = s
        return ids, scores


BACKENDS = {"recfb": _Recfb, "implicit": _Implicit, "rectools": _RecTools, "cornac": _Cornac}


# ---------------------------------------------------------------------------- versions, main

def versions() -> dict:
    """Versions of the libraries importable in this interpreter (absent ones left out)."""
    out = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__}
    for name in ("recfb", "torch", "numba", "implicit", "rectools", "cornac", "pandas", "threadpoolctl"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        out[name] = getattr(module, "__version__", "?")
    if "torch" in out:
        import torch
        out["torch_threads"] = torch.get_num_threads()
    if "numba" in out:
        import numba
        out["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    try:
        from threadpoolctl import threadpool_info
        out["blas"] = sorted({f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                              for i in threadpool_info() if i["user_api"] == "blas"})
    except ImportError:
        pass
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` (per address space, so unlike
    ``ru_maxrss`` it does not carry over the parent's peak across ``exec``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(key: str, train_path, k: int, out_dir, threads: int, warmup_users: int, repeats: int = 1) -> dict:
    """Warm up, fit (timed, ``repeats`` times on new instances), recommend the top ``k`` for every
    user; write ``out_dir``."""
    backend = BACKENDS[library_of(key)](key, threads)
    if library_of(key) == "recfb":
        import torch
        torch.set_num_threads(threads)
    X = read_train(train_path)
    warmup_seconds = 0.0
    if warmup_users > 0:
        small = backend.prepare(X[:min(warmup_users, X.shape[0])])
        t0 = time.perf_counter()
        with backend.context():
            backend.fit(backend.make(), small)
        warmup_seconds = time.perf_counter() - t0
    data = backend.prepare(X)
    fit_all = []
    for _ in range(repeats):
        model = backend.make()
        with backend.context():
            t0 = time.perf_counter()
            backend.fit(model, data)
            fit_all.append(time.perf_counter() - t0)
    fit_seconds = float(np.median(fit_all))
    t0 = time.perf_counter()
    ids, scores = backend.recommend(model, data, k)
    recommend_seconds = time.perf_counter() - t0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "topk.npz", ids=ids, scores=scores)
    result = {"model": key, "written": ALL_MODELS[key], "class": f"{type(model).__module__}.{type(model).__name__}",
              "fit_seconds": fit_seconds, "fit_seconds_all": fit_all,
              "warmup_seconds": warmup_seconds, "recommend_seconds": recommend_seconds,
              "peak_rss_mib": peak_rss_mib(), "threads": threads,
              "versions": versions()}
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", action="store_true", help="print library versions as JSON and exit")
    parser.add_argument("--train", help="train.npz (indptr, indices, shape)")
    parser.add_argument("--model", choices=list(ALL_MODELS))
    parser.add_argument("--k", type=int, default=20, help="length of each top list (default 20)")
    parser.add_argument("--out", help="folder for topk.npz and result.json")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup-users", type=int, default=64,
                        help="untimed warm-up fit on this many users' rows first (0: none; default 64)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time the full fit this many times (new instances); fit_seconds is the median")
    args = parser.parse_args(argv)
    if args.versions:
        print(json.dumps(versions()))
        return 0
    if not (args.train and args.model and args.out):
        parser.error("--train, --model and --out are required (or --versions).")
    if args.k < 1:
        parser.error(f"--k == {args.k}, must be >= 1.")
    if args.threads < 1:
        parser.error(f"--threads == {args.threads}, must be >= 1.")
    if args.repeats < 1:
        parser.error(f"--repeats == {args.repeats}, must be >= 1.")
    result = run(args.model, args.train, args.k, args.out, args.threads, args.warmup_users, args.repeats)
    print(json.dumps({k: result[k] for k in ("model", "fit_seconds", "warmup_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
