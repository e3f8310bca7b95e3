"""Leaderboard: recfb's models at their defaults beside implicit, RecTools and Cornac at theirs.

    .venv/bin/python benchmarks/leaderboard.py                        # ml-1m, ml-100k, lastfm-2k; every row
    .venv/bin/python benchmarks/leaderboard.py --output out.md        # also write the markdown tables
    .venv/bin/python benchmarks/leaderboard.py --quick                # smoke: ml-100k, a few fast rows, checks
    .venv/bin/python benchmarks/leaderboard.py --only-peers           # implicit, RecTools, Cornac (+ MostPopular)
    .venv/bin/python benchmarks/leaderboard.py --skip-peers           # recfb and implicit only
    .venv/bin/python benchmarks/leaderboard.py --datasets ml-1m --models BPR implicit.* 'cornac.BPR*'

Protocol. Each dataset comes from ``recfb.datasets.load(name)`` (data dir: ``../shared/datasets``
when present, else ``$RECFB_DATA_DIR``, then the cache) and is binarised: every stored
interaction counts 1, whatever its rating or play count. It is split once by
``recfb.data.split.random_holdout(ds, test_fraction=0.2, seed=0)`` (per user, 20% of the rows to
test). Every row is fitted in a fresh process by ``benchmarks/_peer_runner.py`` on the same
train CSR (written to a temporary .npz, no pickle): recfb and implicit rows with this
interpreter, RecTools and Cornac rows with ``--peer-python`` (default ``.venv-peers/bin/python``,
a venv made only for this benchmark, never a recfb dependency). The runner times the model's fit
call only, after an untimed warm-up fit on 64 users (numba compilation and lazy initialisation
are not in the figure; the warm-up time is printed with ``--verbose``); with ``--repeats N`` the
fit is timed N times on fresh instances and the median is reported, and with ``--rounds R``
every row is run R times in turn (R fresh processes; the lists are the first round's) and its
median fit time is reported, so that a slow phase of the shared host does not land on one row
only (single timings of a ~1 s fit varied 1.5-3x). It then writes the top 20
unseen items of every user. Every row, recfb's included, is evaluated by the same code:
``recfb.evaluation.ranking_metrics`` on a :class:`TopLists` object that serves those
precomputed lists through the ``recommend()`` contract (``--quick`` asserts that this gives
exactly the metrics of the direct call on recfb models). Lists are checked before evaluation:
no train item, no repeated item, ids in range.

Rows (``--models`` takes these keys or shell patterns such as ``'cornac.*'``):

- recfb at its defaults, as a user writes them: ``MostPopular()``, ``ItemKNN()``, ``EASE()``,
  ``BPR()``, ``MF(loss="bce")`` (key ``MF-bce``), ``CML()``, ``LightGCN()``;
- implicit, called directly on the CSR it expects: ``implicit.BPR`` =
  ``BayesianPersonalizedRanking()``, ``implicit.ALS`` = ``AlternatingLeastSquares()``, fitted
  under single-threaded BLAS as implicit asks;
- RecTools: ``rectools.Popular`` (``PopularModel()``), ``rectools.EASE`` (``EASEModel()``),
  ``rectools.PureSVD`` (``PureSVDModel()``), ``rectools.ALS`` / ``rectools.BPR`` /
  ``rectools.ItemKNN`` (its wrappers of implicit's ``AlternatingLeastSquares()``,
  ``BayesianPersonalizedRanking()``, ``CosineRecommender()``). Its torch models (SASRec, BERT4Rec,
  HSTU, DSSM) and LightFM need extra installs and are not run;
- Cornac: ``cornac.BPR`` (``BPR()``), ``cornac.EASE`` (``EASE()``) and ``cornac.BPR-ref``
  (``BPR(k=64, max_iter=100, learning_rate=0.01, lambda_reg=0.01)``, the issue's reference setting).

Peers run unseeded, as their defaults are (Cornac's BPR turns single-threaded when seeded), so
their figures move a little between runs; recfb's defaults carry ``random_state=0``.
``--only-peers`` keeps recfb's ``MostPopular`` as the baseline of the NDCG / MostPopular ratio.

Columns: NDCG@10, Recall@10, fit seconds, NDCG / MostPopular (recfb's), NDCG / implicit ALS,
fit / implicit BPR fit, and PASS / MISS against the issue's targets (stated for ML-1M, checked on
every dataset): recfb ``BPR()`` NDCG@10 >= implicit BPR's with fit <= 1.5x implicit BPR's (goals:
<= 1.0x, NDCG >= Cornac's BPR); ``MF(loss="bce")``, ``CML()``, ``LightGCN()``, ``BPR()`` each
NDCG@10 >= 1.5x MostPopular and >= 0.9x implicit ALS, fit <= 10x implicit BPR's. A table after
the leaderboard lists each check with its value and bound.

Threads: ``--threads N`` (default: every core) sets OMP/MKL/OpenBLAS/NUMBA_NUM_THREADS in each
child and ``torch.set_num_threads(N)``; implicit keeps its ``num_threads=0`` (every core) when N
is the core count. ``--timeout-per-model S`` (default 3600) kills a row's process after S seconds
(warm-up, fit and top-k together) and reports it as skipped. Other peer venv setup:

    python3 -m venv .venv-peers && .venv-peers/bin/pip install rectools cornac
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _peer_runner import ALL_MODELS, RECFB_MODELS, library_of, recommend_all, versions, write_train
from _report import ROOT, emit, shared_data_dir

import recfb
from recfb.data import split
from recfb.evaluation import ranking_metrics

DATASETS = ("ml-1m", "ml-100k", "lastfm-2k")
K = (10, 20)
RUNNER = Path(__file__).resolve().parent / "_peer_runner.py"
DEFAULT_PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
PEER_SETUP = "python3 -m venv .venv-peers && .venv-peers/bin/pip install rectools cornac"
QUICK_MODELS = ("MostPopular", "EASE", "implicit.ALS", "implicit.BPR", "rectools.EASE", "cornac.BPR")
BASELINE = "MostPopular"
TARGET_MODELS = ("BPR", "MF-bce", "CML", "LightGCN")


class TopLists:
    """Precomputed top lists behind implicit's ``recommend`` contract, so that
    ``ranking_metrics`` evaluates a peer's output exactly as it evaluates a model.

    Parameters
    ----------
    ids : ndarray of int, shape (n_users, n)
        Each user's recommended items, best first, train items already excluded; ``-1`` pads.
    scores : ndarray of float, shape (n_users, n)
        Their scores (non-increasing along a row); ``-inf`` at the pads.
    """

    def __init__(self, ids, scores):
        ids, scores = np.asarray(ids), np.asarray(scores)
        if ids.ndim != 2 or ids.shape != scores.shape:
            raise ValueError(f"ids {ids.shape} and scores {scores.shape} must be the same 2-D shape.")
        self.ids = ids.astype(np.int32)
        self.scores = scores.astype(np.float32)

    def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True, filter_items=None,
                  recalculate_user=False, items=None):
        """The first ``N`` stored items of each user in ``userid`` (int -> 1-D, array -> 2-D)."""
        if not filter_already_liked_items:
            raise ValueError("TopLists hold lists with train items removed; filter_already_liked_items "
                             "must be True.")
        if filter_items is not None or items is not None or recalculate_user:
            raise ValueError("TopLists cannot filter_items, restrict items or recalculate users.")
        if self.ids.shape[1] < N:
            raise ValueError(f"N == {N}, but only {self.ids.shape[1]} items per user were stored.")
        users = np.asarray(userid)
        return self.ids[users, :N], self.scores[users, :N]


def check_lists(ids: np.ndarray, train: sp.csr_matrix, name: str) -> None:
    """Raise if a top list holds an out-of-range id, a train item or an item twice."""
    n_users, n_items = train.shape
    if ids.shape[0] != n_users:
        raise ValueError(f"{name}: {ids.shape[0]} top lists for {n_users} users.")
    valid = ids >= 0
    if (ids[valid] >= n_items).any():
        raise ValueError(f"{name}: item id {ids.max()} >= {n_items} items.")
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + ids
    train_keys = np.repeat(np.arange(n_users, dtype=np.int64) * n_items, np.diff(train.indptr)) + train.indices
    pos = np.minimum(np.searchsorted(train_keys, keys), train_keys.size - 1)
    leaked = valid & (train_keys[pos] == keys)
    if leaked.any():
        raise ValueError(f"{name}: {int(leaked.sum())} recommended items are train items "
                         f"(first at user {int(np.nonzero(leaked)[0][0])}).")
    sorted_ids = np.sort(np.where(valid, ids, -1 - np.arange(ids.shape[1])), axis=1)
    if (sorted_ids[:, 1:] == sorted_ids[:, :-1]).any():
        raise ValueError(f"{name}: a top list repeats an item.")


@dataclass
class Row:
    key: str
    written: str
    library: str
    status: str = "ok"               # ok | skipped | failed
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    fit_seconds: float = float("nan")
    info: dict = field(default_factory=dict)


def run_row(key, python, train_path, work, threads, timeout, verbose, repeats=1) -> tuple[Row, np.ndarray | None]:
    """Fit one row in a child process; return the row and its top lists (``None`` if not run)."""
    row = Row(key, ALL_MODELS[key], library_of(key))
    out = Path(work) / key
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [str(python), str(RUNNER), "--train", str(train_path), "--model", key, "--k", str(max(K)),
           "--out", str(out), "--threads", str(threads), "--repeats", str(repeats)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        row.status, row.reason = "skipped", f"ran over --timeout-per-model {timeout:g} s"
        return row, None
    if proc.returncode != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else (lines[-1] if lines else "no output")
        row.status, row.reason = "failed", why[:200]
        if verbose:
            print(stderr[-3000:], file=sys.stderr)
        return row, None
    info = json.loads((out / "result.json").read_text())
    with np.load(out / "topk.npz", allow_pickle=False) as f:
        ids, scores = f["ids"], f["scores"]
    row.fit_seconds, row.info = info["fit_seconds"], info
    row.info["wall_seconds"] = time.perf_counter() - t0
    return row, (ids, scores)


def evaluate(model, train, test) -> dict:
    return dict(ranking_metrics(model, train, test, k=K))


def check_wrapper(train, test) -> str:
    """``ranking_metrics`` on :class:`TopLists` built from a recfb model's own ``recommend``
    must equal the direct call exactly; raises AssertionError otherwise."""
    from recfb.models import EASE, MostPopular
    lines = []
    for model in (MostPopular().fit(train, show_progress=False), EASE().fit(train, show_progress=False)):
        direct = evaluate(model, train, test)
        ids, scores = recommend_all(model, train, max(K))
        check_lists(ids, train, type(model).__name__)
        wrapped = evaluate(TopLists(ids, scores), train, test)
        assert wrapped == direct, f"TopLists changed the metrics of {type(model).__name__}: {wrapped} != {direct}"
        lines.append(f"{type(model).__name__}() ndcg@10 {direct['ndcg@10']:.6f}")
    return "TopLists wrapper == direct ranking_metrics call, every metric exactly: " + "; ".join(lines)


def load_split(name):
    """Binary train / test CSR of ``name`` under the benchmark's split, and a one-line summary."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ml-1m pairs copy: no ratings / timestamps, expected here
        ds = recfb.datasets.load(name, data_dir=shared_data_dir(), quiet=True)
    train, test = split.random_holdout(ds, test_fraction=0.2, seed=0)

    def binary(part):
        X = sp.csr_matrix(part.matrix, dtype=np.float32)
        X.sum_duplicates()
        X.data[:] = 1.0
        X.sort_indices()
        return X

    train_X, test_X = binary(train), binary(test)
    summary = (f"{name}: {train_X.shape[0]:,} users x {train_X.shape[1]:,} items, {train_X.nnz:,} train / "
               f"{test_X.nnz:,} test interactions (binary)")
    return train_X, test_X, summary


def by_key(rows) -> dict:
    return {r.key: r for r in rows if r.status == "ok"}


def ratio(a, b):
    return a / b if b and np.isfinite(a) and np.isfinite(b) else float("nan")


def target_checks(rows) -> list[tuple]:
    """``(model, check, value, bound, verdict)`` for the issue's targets on one dataset."""
    ok = by_key(rows)
    pop, als, ibpr = ok.get(BASELINE), ok.get("implicit.ALS"), ok.get("implicit.BPR")
    checks = []

    def add(model, what, value, bound, holds, kind="target", needs=None):
        if needs is not None and needs not in ok:
            checks.append((model, what, float("nan"), bound, f"n/a ({needs} not run)", kind))
        else:
            checks.append((model, what, value, bound, ("PASS" if holds else "MISS") if kind == "target"
                           else ("met" if holds else "not met"), kind))

    for key in TARGET_MODELS:
        if key not in ok:
            continue
        r = ok[key]
        ndcg, fit = r.metrics["ndcg@10"], r.fit_seconds
        if key == "BPR":
            v = ibpr.metrics["ndcg@10"] if ibpr else float("nan")
            add(key, "NDCG@10 >= implicit BPR", ndcg, v, ndcg >= v, needs="implicit.BPR")
            q = ratio(fit, ibpr.fit_seconds) if ibpr else float("nan")
            add(key, "fit / implicit BPR <= 1.5", q, 1.5, q <= 1.5, needs="implicit.BPR")
        q = ratio(ndcg, pop.metrics["ndcg@10"]) if pop else float("nan")
        add(key, "NDCG@10 / MostPopular >= 1.5", q, 1.5, q >= 1.5, needs=BASELINE)
        q = ratio(ndcg, als.metrics["ndcg@10"]) if als else float("nan")
        add(key, "NDCG@10 / implicit ALS >= 0.9", q, 0.9, q >= 0.9, needs="implicit.ALS")
        q = ratio(fit, ibpr.fit_seconds) if ibpr else float("nan")
        add(key, "fit / implicit BPR <= 10", q, 10.0, q <= 10.0, needs="implicit.BPR")
        if key == "BPR":
            q = ratio(fit, ibpr.fit_seconds) if ibpr else float("nan")
            add(key, "goal: fit / implicit BPR <= 1.0", q, 1.0, q <= 1.0, kind="goal", needs="implicit.BPR")
            for peer in ("cornac.BPR-ref", "cornac.BPR"):
                v = ok[peer].metrics["ndcg@10"] if peer in ok else float("nan")
                add(key, f"goal: NDCG@10 >= {peer}", ndcg, v, ndcg >= v, kind="goal", needs=peer)
    return checks


def fmt(x, digits=4):
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fmt_s(x):
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def dataset_tables(summary, rows, verbose) -> list[str]:
    ok = by_key(rows)
    pop, als, ibpr = ok.get(BASELINE), ok.get("implicit.ALS"), ok.get("implicit.BPR")
    checks = target_checks(rows)
    verdict = {}
    for model, _, _, _, v, kind in checks:
        if kind == "target":
            verdict.setdefault(model, []).append(v)
    lines = [f"### {summary}", ""]
    head = "| model | library | NDCG@10 | Recall@10 | fit s | NDCG / MostPop | NDCG / iALS | fit / iBPR | targets |"
    if verbose:
        head += " warm-up s | top-k s | peak RSS MiB |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| `{r.written}` | {r.library} | {r.status}: {r.reason} | | | | | | |"
                         + (" | | |" if verbose else ""))
            continue
        ndcg = r.metrics["ndcg@10"]
        v = verdict.get(r.key)
        if v is None:
            target = ""
        elif all(x == "PASS" for x in v):
            target = "PASS"
        else:
            n_miss = sum(x == "MISS" for x in v)
            target = f"MISS ({n_miss}/{len(v)})" if n_miss else "n/a"
        line = (f"| `{r.written}` | {r.library} | {fmt(ndcg)} | {fmt(r.metrics['recall@10'])} | "
                f"{fmt_s(r.fit_seconds)} | {fmt(ratio(ndcg, pop.metrics['ndcg@10']) if pop else None, 2)} | "
                f"{fmt(ratio(ndcg, als.metrics['ndcg@10']) if als else None, 2)} | "
                f"{fmt(ratio(r.fit_seconds, ibpr.fit_seconds) if ibpr else None, 2)} | {target} |")
        if verbose:
            line += (f" {fmt_s(r.info['warmup_seconds'])} | {fmt_s(r.info['recommend_seconds'])} | "
                     f"{r.info['peak_rss_mib']:.0f} |")
        lines.append(line)
    if checks:
        lines += ["", "| model | check | value | bound | result |", "|---|---|---|---|---|"]
        for model, what, value, bound, v, _ in checks:
            lines.append(f"| `{RECFB_MODELS[model]}` | {what} | {fmt(value, 3)} | {fmt(bound, 3)} | {v} |")
    return lines + [""]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "recfb"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" (+ uncommitted changes in recfb/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def peer_versions(python) -> tuple[dict | None, str]:
    """The peer venv's versions, or ``None`` and why the RecTools/Cornac rows are skipped."""
    python = Path(python)
    if not python.exists():
        return None, (f"RecTools/Cornac rows skipped: {python} not found. Create the peer venv with "
                      f"`{PEER_SETUP}` (or pass --peer-python).")
    proc = subprocess.run([str(python), str(RUNNER), "--versions"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return None, f"RecTools/Cornac rows skipped: {python} --versions failed: {proc.stderr.strip()[-300:]}"
    found = json.loads(proc.stdout)
    missing = [m for m in ("rectools", "cornac") if m not in found]
    if missing:
        return found, (f"{', '.join(missing)} not installed in {python}: their rows are skipped "
                       f"(`{python.parent / 'pip'} install {' '.join(missing)}`).")
    return found, ""


def select_models(patterns, quick, skip_peers, only_peers) -> list[str]:
    if patterns:
        keys = []
        for pattern in patterns:
            hits = [k for k in ALL_MODELS if fnmatch.fnmatchcase(k.lower(), pattern.lower())]
            if not hits:
                raise SystemExit(f"--models {pattern!r} matches no model; expected one of: {', '.join(ALL_MODELS)}.")
            keys += [k for k in hits if k not in keys]
    else:
        keys = list(QUICK_MODELS if quick else ALL_MODELS)
    if skip_peers:
        keys = [k for k in keys if library_of(k) in ("recfb", "implicit")]
    if only_peers:
        keys = [k for k in keys if library_of(k) != "recfb" or k == BASELINE]
        if BASELINE not in keys:
            keys.insert(0, BASELINE)
    return keys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, help="default: all three (--quick: ml-100k)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="keys or shell patterns: " + ", ".join(ALL_MODELS))
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--skip-peers", action="store_true", help="recfb and implicit rows only")
    group.add_argument("--only-peers", action="store_true",
                       help="implicit, RecTools and Cornac rows (+ recfb MostPopular as the ratio baseline)")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON,
                        help="interpreter of the RecTools/Cornac venv (default .venv-peers/bin/python)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke: ml-100k, " + ", ".join(QUICK_MODELS) + ", and the TopLists check")
    parser.add_argument("--timeout-per-model", type=float, default=3600.0, metavar="S",
                        help="kill and skip a row whose process runs over S seconds (default 3600)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per row (default: all cores)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each row's fit this many times (fresh instances, same process) and report the "
                             "median (default 1)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every row this many times, in turn (each a fresh process), and report each row's "
                             "median fit time: slow phases of a shared host then fall on every row alike (default 1)")
    parser.add_argument("--output", type=Path, metavar="FILE.md", help="write the markdown report here too")
    parser.add_argument("--verbose", action="store_true", help="warm-up, top-k, peak RSS columns; child stderr")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads == {args.threads}, must be >= 1.")
    if args.repeats < 1:
        parser.error(f"--repeats == {args.repeats}, must be >= 1.")
    if args.rounds < 1:
        parser.error(f"--rounds == {args.rounds}, must be >= 1.")
    if args.timeout_per_model <= 0:
        parser.error(f"--timeout-per-model == {args.timeout_per_model}, must be > 0.")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    datasets = args.datasets or (["ml-100k"] if args.quick else list(DATASETS))
    keys = select_models(args.models, args.quick, args.skip_peers, args.only_peers)
    peers_wanted = [k for k in keys if library_of(k) in ("rectools", "cornac")]
    notes = []
    peer_info = None
    if peers_wanted:
        peer_info, why = peer_versions(args.peer_python)
        if why:
            print(why)
            notes.append(why)
            keep = {"rectools", "cornac"} if peer_info is None else {m for m in ("rectools", "cornac")
                                                                     if m not in peer_info}
            keys = [k for k in keys if library_of(k) not in keep]
    main_info = versions()
    exe = Path(sys.executable)
    exe = exe.relative_to(ROOT) if exe.is_relative_to(ROOT) else exe
    extra = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(shlex.quote(str(a)) for a in [exe, "benchmarks/leaderboard.py", *extra])
    print(f"rows: {', '.join(keys)}\nthreads: {args.threads}; machine: {machine()}")

    sections = []
    with tempfile.TemporaryDirectory(prefix="recfb-leaderboard-") as tmp:
        for name in datasets:
            train, test, summary = load_split(name)
            print(f"\n{summary}")
            if args.quick:
                line = check_wrapper(train, test)
                print(line)
                notes.append(f"{name}: {line}")
            train_path = Path(tmp) / f"{name}-train.npz"
            write_train(train_path, train)
            rows = []
            def fit_row(key):
                python = args.peer_python if library_of(key) in ("rectools", "cornac") else sys.executable
                return run_row(key, python, train_path, Path(tmp) / name, args.threads, args.timeout_per_model,
                               args.verbose, args.repeats)

            for key in keys:
                row, lists = fit_row(key)
                if lists is not None:
                    try:
                        check_lists(lists[0], train, key)
                    except ValueError as exc:  # a runner bug: report the row, keep the others
                        row.status, row.reason, lists = "failed", f"invalid top lists: {exc}", None
                if lists is not None:
                    row.metrics = evaluate(TopLists(*lists), train, test)
                    print(f"  {key:<18} ndcg@10 {row.metrics['ndcg@10']:.4f}  recall@10 "
                          f"{row.metrics['recall@10']:.4f}  fit {row.fit_seconds:9.2f} s")
                else:
                    print(f"  {key:<18} {row.status.upper()}: {row.reason}")
                rows.append(row)
            for r in range(1, args.rounds):  # the rows again, in turn: fit times only (the lists are round 1's)
                for row in rows:
                    if row.status != "ok":
                        continue
                    again, _ = fit_row(row.key)
                    row.info.setdefault("fit_seconds_rounds", [row.fit_seconds]).append(again.fit_seconds)
                    print(f"  round {r + 1}: {row.key:<18} fit {again.fit_seconds:9.2f} s")
            for row in rows:
                if "fit_seconds_rounds" in row.info:
                    row.fit_seconds = float(np.nanmedian(row.info["fit_seconds_rounds"]))
            sections += dataset_tables(summary, rows, args.verbose)

    used = {library_of(k) for k in keys}
    lines = ["## Leaderboard: defaults vs peers", "",
             f"Command: `{command}` (recfb {git_commit()})", "",
             f"Machine: {machine()}; {args.threads} threads per row (one row at a time, each in a fresh process).",
             "",
             "Protocol: `random_holdout(ds, test_fraction=0.2, seed=0)` on the binarised dataset; every row ranks all "
             "items minus the user's train items and is scored by `recfb.evaluation.ranking_metrics` (k=10, 20); "
             "fit seconds time the fit call only, after an untimed warm-up fit on 64 users"
             + (f" (median of {args.repeats} fits on fresh instances)" if args.repeats > 1 else "")
             + (f"; each row's fit is the median of {args.rounds} rounds over all rows, in turn, each a fresh process"
                if args.rounds > 1 else "") + "; ratios: NDCG@10 over "
             "recfb `MostPopular()`'s and implicit ALS's, fit over implicit BPR's. Targets (PASS/MISS) are the "
             "issue's, stated for ML-1M. Peers run unseeded, as their defaults are.", "",
             "Versions (recfb venv): " + ", ".join(f"{k} {v}" for k, v in main_info.items()
                                                   if k not in ("rectools", "cornac")), ""]
    if peer_info and used & {"rectools", "cornac"}:
        lines += ["Versions (peer venv `" + str(args.peer_python) + "`): "
                  + ", ".join(f"{k} {v}" for k, v in peer_info.items()), ""]
    lines += sections
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    emit(lines, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
