r"""Closed-loop simulation: a recommender retrained on the clicks its own lists produced.

Taori & Hashimoto ("Data Feedback Loops: Model-driven Amplification of Dataset Biases", ICML
2023) show that when a model's outputs become its future training data, biases amplify, and
far less so when the outputs behave like samples of the training distribution. In a
recommender, what is shown gets clicked and what gets clicked gets shown. :func:`run_loop`
closes that loop on a world whose true relevance is known, logging the exact probability of
every impression so that inverse-propensity and Rel-MF/DR retraining use *true* propensities.
"""
from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recfb.evaluation.diversity import diversity_metrics, gini
from recfb.simulate.policies import check_policy_output, examination_propensities, make_policy
from recfb.utils.errors import DataError
from recfb.utils.pairs import pair_keys
from recfb.utils.validation import check_positive_int, check_random_state, rows_per_block

__all__ = ["LoopResult", "run_loop", "plot_histories"]

WEIGHTINGS = ("naive", "ips", "snips", "propensity")
RETRAIN = ("fresh", "warm")
MNAR_LOSSES = ("relmf", "ubpr", "relmf_dr")  # MF losses that read the propensity parameter
HISTORY_COLUMNS = ("round", "true_dcg", "exposure_gini", "coverage", "top1pct_share", "clicks", "ctr", "novelty",
                   "avg_popularity", "log_gini", "log_clicks")
LOG_COLUMNS = ("round", "user", "item", "position", "policy_prob", "examination", "propensity", "click")


@dataclass
class LoopResult:
    """What :func:`run_loop` returns.

    Attributes
    ----------
    history : pandas.DataFrame
        One row per round (``HISTORY_COLUMNS``): ``round``; ``true_dcg``, the expected DCG@k of
        the round's lists under true relevance (``sum_p relevance_prob[u, i_p] / log2(p + 1)``,
        mean over all users); over the impressions of the round: ``exposure_gini`` (Gini of the
        item exposure counts, zeros included), ``coverage`` (share of items shown),
        ``top1pct_share`` (share of the impressions that went to the 1% most exposed items of
        round 0), ``clicks``, ``ctr`` (clicks per impression), ``novelty`` and
        ``avg_popularity`` (:func:`recfb.evaluation.diversity_metrics` against the round's
        training log); ``log_gini`` (Gini of the item click counts of the log after the round:
        the dataset bias the loop amplifies) and ``log_clicks`` (its size).
    log : pandas.DataFrame
        One row per impression (``LOG_COLUMNS``): ``round``, ``user``, ``item``, ``position``
        (1 = top), ``policy_prob`` (the policy's exact probability of that item in that slot
        given the slots above), ``examination`` (the slot's examination probability),
        ``propensity = policy_prob * examination`` and ``click``. The world's own clicks come
        first as round ``-1``, position 0, with the world's exposure propensity as
        ``policy_prob`` and ``propensity`` and examination 1.
    model : object
        The model of the last round.
    params : dict
        The arguments of the run, and ``initial_log_gini`` (Gini of the world's click counts).
    """

    history: object
    log: object
    model: object = None
    params: dict = field(default_factory=dict)

    def plot(self, path=None, metrics=("true_dcg", "exposure_gini", "coverage", "top1pct_share")):
        """Draw the history's curves (see :func:`plot_histories`); returns the figure."""
        return plot_histories({self.params.get("policy", "run"): self}, path, metrics)

    def __repr__(self) -> str:
        h = self.history
        return (f"LoopResult({len(h)} rounds, {len(self.log):,} log rows; true_dcg {h['true_dcg'].iloc[0]:.4f} -> "
                f"{h['true_dcg'].iloc[-1]:.4f}, exposure_gini {h['exposure_gini'].iloc[0]:.3f} -> "
                f"{h['exposure_gini'].iloc[-1]:.3f})")


def run_loop(world, model_factory, *, policy="topk", rounds: int = 10, k: int = 10, users_per_round=None,
             weighting: str = "naive", clip=None, retrain: str = "fresh", temperature: float = 1.0,
             epsilon: float = 0.1, examination="position", seed=0, show_progress: bool = True) -> LoopResult:
    r"""Run a recommender in closed loop with a world of known relevance.

    Round ``r = 0, 1, ...``: fit a model from ``model_factory()`` on the log so far (round 0:
    the world's own exposure-biased clicks), score every user's items (already-clicked items
    excluded), let the policy fill ``k`` slots per user, simulate examination by position
    (position-based model, ``P(click) = examination_p * relevance_prob[u, i]``, drawn
    independently per impression) for the users who visit this round, and append the clicks.

    Parameters
    ----------
    world : SyntheticWorld or SemiSyntheticWorld
        From :func:`recfb.datasets.make_world` (initial log: ``world.clicks``) or
        :func:`recfb.debias.make_semi_synthetic` (initial log: ``train`` and ``valid``); any
        object with ``relevance_prob`` (users x items), ``propensity`` and one of those logs.
    model_factory : callable () -> model
        A fresh, unfitted model per round (e.g. ``lambda: MF(loss="bpr", factors=32)``). Its
        scores come from ``model.score`` (recfb models) or ``user_factors @ item_factors.T``.
    policy : {"topk", "softmax", "epsilon"} or callable, default "topk"
        See :mod:`recfb.simulate.policies`; a callable is ``(scores, k, rng) -> (items, probabilities)``.
    rounds : int, default 10
    k : int, default 10
        Slots per list.
    users_per_round : int, optional
        Users who visit (are logged) each round, drawn without replacement; default all. Every
        user's list is still drawn, so ``true_dcg`` covers all users.
    weighting : {"naive", "ips", "snips", "propensity"}, default "naive"
        How the log's propensities reach training: ``"naive"`` ignores them; ``"ips"`` and
        ``"snips"`` pass ``sample_weight = 1 / max(propensity, clip)`` (self-normalised for
        SNIPS) per click; ``"propensity"`` sets the model's ``propensity`` parameter (Rel-MF,
        UBPR, DR Rel-MF: ``MF(loss="relmf" | "ubpr" | "relmf_dr")``, or a loss object's
        ``propensity``) to a users x items matrix holding each click's logged propensity and
        the world's exposure propensity elsewhere.
    clip : float in (0, 1], optional
        Propensity floor of ``"ips"``/``"snips"`` (the MNAR losses use the model's own ``clip``).
    retrain : {"fresh", "warm"}, default "fresh"
        ``"warm"``: each round's model starts from the previous round's fitted parameters
        (models trained by :mod:`recfb.train`: MF, CML, LightGCN); the optimiser restarts.
    temperature : float > 0, default 1.0
        Softmax temperature of ``policy="softmax"``.
    epsilon : float in [0, 1], default 0.1
        Exploration rate of ``policy="epsilon"``.
    examination : "position", "uniform" or array of k floats in (0, 1], default "position"
        Examination probability per slot; ``"position"`` is ``1 / p``.
    seed : int, numpy Generator or None, default 0
        Seeds the lists, visits and clicks (the models keep their own ``random_state``); the
        same seed gives the same history and log.
    show_progress : bool, default True
        tqdm bar over rounds (the models' own bars are always off).

    Returns
    -------
    LoopResult

    Notes
    -----
    ``propensity`` of an impression in slot ``p > 1`` is conditional on the items above it
    (Plackett-Luce has no closed-form slot marginal): the exact figure a logger can record.
    ``1 / propensity`` is then the importance weight of the slot's draw, unbiased for the
    relevance summed over the items still available at that slot; a deterministic top-k
    policy only gets the position (examination) correction, as nothing else is identifiable.
    """
    relevance, initial, base_propensity = _check_world(world)
    n_users, n_items = relevance.shape
    if not callable(model_factory):
        raise TypeError(f"model_factory must be a callable returning a fresh model, got {type(model_factory).__name__}.")
    rounds = check_positive_int(rounds, "rounds")
    k = check_positive_int(k, "k")
    if k > n_items:
        raise ValueError(f"k == {k}, must be <= the number of items ({n_items}).")
    visitors = n_users if users_per_round is None else check_positive_int(users_per_round, "users_per_round")
    if visitors > n_users:
        raise ValueError(f"users_per_round == {users_per_round}, must be <= the number of users ({n_users}).")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting == {weighting!r}, must be one of {WEIGHTINGS}.")
    if retrain not in RETRAIN:
        raise ValueError(f"retrain == {retrain!r}, must be one of {RETRAIN}.")
    if clip is not None:
        from recfb.debias import check_clip
        clip = check_clip(clip)
        if weighting not in ("ips", "snips"):
            raise ValueError(f"clip == {clip} applies to weighting 'ips'/'snips' only (weighting == {weighting!r}); "
                             "the MNAR losses take the model's own clip.")
    if weighting != "naive" and base_propensity is None:
        raise DataError(f"weighting == {weighting!r} needs the world's exposure propensity (world.propensity).")
    policy_fn = make_policy(policy, temperature=temperature, epsilon=epsilon)
    exam = examination_propensities(examination, k)
    rng = check_random_state(seed)
    params = {"policy": policy if isinstance(policy, str) else getattr(policy, "__name__", "callable"),
              "rounds": rounds, "k": k, "users_per_round": users_per_round, "weighting": weighting, "clip": clip,
              "retrain": retrain, "temperature": float(temperature), "epsilon": float(epsilon),
              "examination": exam.tolist(), "seed": seed if isinstance(seed, (numbers.Integral, type(None))) else
              "Generator"}

    # the log: per click (user, item, propensity), and every impression row for LoopResult.log
    c_users, c_items = initial
    c_prop = (base_propensity[c_users, c_items] if base_propensity is not None else np.ones(c_users.size))
    rows = [_log_rows(-1, c_users, c_items, np.zeros(c_users.size, np.int64), c_prop, np.ones(c_users.size),
                      np.ones(c_users.size, bool))]
    params["initial_log_gini"] = gini(np.bincount(c_items, minlength=n_items))
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    history, model, previous, top_items = [], None, None, None
    from tqdm.auto import tqdm
    for r in tqdm(range(rounds), disable=not show_progress, desc="feedback loop", unit="round"):
        round_rng = np.random.default_rng(rng.integers(2**63))
        X, order = _click_matrix(c_users, c_items, n_users, n_items)
        model = model_factory()
        _fit(model, X, c_prop[order], weighting, clip, base_propensity, c_users, c_items, c_prop,
             previous if retrain == "warm" else None)
        previous = model
        items, probs = _lists(model, X, policy_fn, k, round_rng)
        shown = np.where(items >= 0, items, 0)
        gains = np.where(items >= 0, relevance[np.arange(n_users)[:, None], shown], 0.0)
        true_dcg = float((gains @ discount).mean())

        visit = (np.arange(n_users) if visitors == n_users else
                 np.sort(round_rng.choice(n_users, visitors, replace=False)))
        v_items, v_probs = items[visit], probs[visit]
        filled = v_items >= 0
        v_users = np.repeat(visit, filled.sum(1))
        imp_items, imp_probs = v_items[filled], v_probs[filled]
        imp_pos = np.nonzero(filled)[1] + 1
        imp_exam = exam[imp_pos - 1]
        clicked = round_rng.random(imp_items.size) < imp_exam * relevance[v_users, imp_items]
        rows.append(_log_rows(r, v_users, imp_items, imp_pos, imp_probs, imp_exam, clicked))

        counts = np.bincount(imp_items, minlength=n_items)
        if top_items is None:  # the 1% most exposed items of round 0 (ties: lower id)
            top_items = np.argsort(-counts, kind="stable")[:max(1, int(np.ceil(0.01 * n_items)))]
        div = diversity_metrics(v_items, X, k=k)
        c_users = np.concatenate([c_users, v_users[clicked]])
        c_items = np.concatenate([c_items, imp_items[clicked]])
        c_prop = np.concatenate([c_prop, (imp_probs * imp_exam)[clicked]])
        n_imp = int(imp_items.size)
        history.append({"round": r, "true_dcg": true_dcg, "exposure_gini": div[f"gini@{k}"],
                        "coverage": div[f"coverage@{k}"],
                        "top1pct_share": float(counts[top_items].sum() / n_imp) if n_imp else 0.0,
                        "clicks": int(clicked.sum()), "ctr": float(clicked.sum() / n_imp) if n_imp else 0.0,
                        "novelty": div[f"novelty@{k}"], "avg_popularity": div[f"avg_popularity@{k}"],
                        "log_gini": gini(np.bincount(c_items, minlength=n_items)), "log_clicks": int(c_items.size)})
    pd = _pandas()
    log = pd.DataFrame({name: np.concatenate([part[name] for part in rows]) for name in LOG_COLUMNS})
    return LoopResult(history=pd.DataFrame(history, columns=list(HISTORY_COLUMNS)), log=log, model=model,
                      params=params)


# ---------------------------------------------------------------------- helpers
def _pandas():
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is in the dev extra
        raise ImportError("recfb.simulate needs pandas for LoopResult tables: pip install pandas") from None
    return pandas


def _check_world(world):
    """(relevance float64 users x items, initial clicks (users, items), exposure propensity or None)."""
    if not hasattr(world, "relevance_prob"):
        raise TypeError(f"world must be a synthetic or semi-synthetic world with relevance_prob (recfb.datasets."
                        f"make_world, recfb.debias.make_semi_synthetic), got {type(world).__name__}.")
    relevance = np.asarray(world.relevance_prob, np.float64)
    if relevance.ndim != 2 or not relevance.size:
        raise DataError(f"world.relevance_prob must be a users x items matrix, got shape {relevance.shape}.")
    if not (np.all(np.isfinite(relevance)) and relevance.min() >= 0 and relevance.max() <= 1):
        raise DataError("world.relevance_prob must hold probabilities in [0, 1].")
    if hasattr(world, "clicks"):
        X = world.clicks.matrix
    elif hasattr(world, "train"):
        X = world.train + world.valid if getattr(world, "valid", None) is not None else world.train
    else:
        raise TypeError("world must carry its click log as .clicks (SyntheticWorld) or .train/.valid "
                        "(SemiSyntheticWorld).")
    X = sp.csr_matrix(X)
    if X.shape != relevance.shape:
        raise DataError(f"the world's click log has shape {X.shape}, relevance_prob {relevance.shape}.")
    X.sum_duplicates()
    X.eliminate_zeros()
    coo = X.tocoo()
    theta = getattr(world, "propensity", None)
    if theta is not None:
        from recfb.debias import check_propensity
        theta = np.broadcast_to(check_propensity(theta, "world.propensity"), relevance.shape)
    return relevance, (coo.row.astype(np.int64), coo.col.astype(np.int64)), theta


def _click_matrix(users, items, n_users, n_items):
    """CSR of the clicked pairs (sorted indices) and the permutation of the click arrays into CSR order."""
    order = np.argsort(pair_keys(users, items, n_items), kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])
    X = sp.csr_matrix((np.ones(order.size, np.float32), items[order].astype(np.int32), indptr),
                      shape=(n_users, n_items))
    return X, order


def _fit(model, X, click_prop, weighting, clip, base_propensity, c_users, c_items, c_prop, previous):
    accepts = inspect.signature(model.fit).parameters
    kwargs = {"show_progress": False} if "show_progress" in accepts else {}
    if weighting in ("ips", "snips"):
        if "sample_weight" not in accepts:
            raise TypeError(f"weighting == {weighting!r} needs model.fit(X, sample_weight=...); "
                            f"{type(model).__name__}.fit has no sample_weight.")
        from recfb.debias import ips_weights
        kwargs["sample_weight"] = ips_weights(click_prop, clip=clip, self_normalize=weighting == "snips")
    elif weighting == "propensity":
        theta = np.array(base_propensity, np.float32)
        theta[c_users, c_items] = c_prop
        _set_propensity(model, theta)
    if previous is None:
        model.fit(X, **kwargs)
        return
    restore = _warm_start(model, previous)
    try:
        model.fit(X, **kwargs)
    finally:
        restore()


def _set_propensity(model, theta):
    loss = getattr(model, "loss", None)
    if isinstance(loss, str) and loss not in MNAR_LOSSES:
        raise TypeError(f"weighting == 'propensity' needs an MNAR loss that uses propensities ({MNAR_LOSSES}); "
                        f"{type(model).__name__}(loss={loss!r}) would ignore them (use weighting='ips').")
    target = False
    if hasattr(loss, "propensity") and not isinstance(loss, str):
        loss.propensity = theta
        target = True
    if hasattr(model, "get_params") and "propensity" in model.get_params():
        model.set_params(propensity=theta)
        target = True
    if not target:
        raise TypeError(f"weighting == 'propensity' needs a model with a propensity parameter (MF(loss='relmf' | "
                        f"'ubpr' | 'relmf_dr')); {type(model).__name__} has none.")


def _warm_start(model, previous):
    """Make ``model.fit`` start from ``previous``'s fitted scorer parameters; returns the undo."""
    import torch
    scorer = getattr(previous, "scorer_", None)
    if scorer is None or "_build_scorer" not in dir(model):
        raise TypeError(f"retrain == 'warm' needs models trained by recfb.train (MF, CML, LightGCN ...); "
                        f"{type(model).__name__} keeps no fitted scorer_.")
    state = {name: p.detach().cpu().clone() for name, p in scorer.named_parameters()}
    build = model._build_scorer

    def build_warm(*args, **kwargs):
        fresh = build(*args, **kwargs)
        own = dict(fresh.named_parameters())
        if {n: tuple(p.shape) for n, p in own.items()} != {n: tuple(p.shape) for n, p in state.items()}:
            raise DataError("retrain == 'warm': the model's parameters changed shape between rounds; "
                            "model_factory must build the same architecture every round.")
        with torch.no_grad():
            for name, p in own.items():
                p.copy_(state[name])
        return fresh

    model._build_scorer = build_warm
    return lambda: model.__dict__.pop("_build_scorer", None)


def _scores(model, users, X_rows) -> np.ndarray:
    from recfb.models.base import Recommender
    if isinstance(model, Recommender):
        return np.asarray(model.score(users, X_rows), np.float64)
    U, V = getattr(model, "user_factors", None), getattr(model, "item_factors", None)
    if U is None or V is None:
        raise TypeError(f"cannot score {type(model).__name__}: a policy needs full score rows, from a recfb "
                        "model's score() or user_factors @ item_factors.T.")
    U, V = (a.to_numpy() if hasattr(a, "to_numpy") else np.asarray(a) for a in (U, V))
    return np.asarray(U[users], np.float64) @ np.asarray(V, np.float64).T


def _lists(model, X, policy_fn, k, rng):
    """Every user's list from the policy, in blocks of users; clicked items are ineligible."""
    n_users, n_items = X.shape
    items = np.full((n_users, k), -1, np.int64)
    probs = np.full((n_users, k), np.nan)
    block = rows_per_block(8 * n_items)  # users x items float64 scores per policy call
    for start in range(0, n_users, block):  # blocks of users, each one vectorised policy call
        stop = min(n_users, start + block)
        rows = X[start:stop]
        s = _scores(model, np.arange(start, stop), rows)
        if s.shape != (stop - start, n_items):
            raise DataError(f"the model scored {s.shape} for {stop - start} users x {n_items} items.")
        s = np.where(np.isnan(s), -np.inf, s)
        s[np.repeat(np.arange(stop - start), np.diff(rows.indptr)), rows.indices] = -np.inf
        items[start:stop], probs[start:stop] = check_policy_output(policy_fn(s, k, rng), s, k)
    return items, probs


def _log_rows(r, users, items, positions, policy_prob, examination, click):
    n = users.size
    return {"round": np.full(n, r, np.int64), "user": users.astype(np.int64), "item": items.astype(np.int64),
            "position": positions.astype(np.int64), "policy_prob": np.asarray(policy_prob, np.float64),
            "examination": np.asarray(examination, np.float64),
            "propensity": np.asarray(policy_prob, np.float64) * examination, "click": np.asarray(click, bool)}


def plot_histories(curves, path=None, metrics=("true_dcg", "exposure_gini", "coverage", "top1pct_share"),
                   dpi: int = 90):
    """One panel per metric, one curve per entry of ``curves`` against the round.

    Parameters
    ----------
    curves : dict name -> LoopResult, DataFrame or list of them
        A list (e.g. one run per seed) is drawn as its mean with a +-1 std band.
    path : str or Path, optional
        Where to save the figure (PNG, ...).
    metrics : sequence of str
        History columns to draw.
    dpi : int, default 90
        Resolution of the saved figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    metrics = list(metrics)
    cols = min(2, len(metrics))
    n_rows = int(np.ceil(len(metrics) / cols))
    fig = Figure(figsize=(5.2 * cols, 3.4 * n_rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, cols)).ravel()
    for name, runs in curves.items():
        runs = runs if isinstance(runs, (list, tuple)) else [runs]
        frames = [getattr(run, "history", run) for run in runs]
        for ax, metric in zip(axes, metrics):
            if metric not in frames[0]:
                raise KeyError(f"metric {metric!r} is not a history column; columns: {list(frames[0].columns)}.")
            values = np.stack([f[metric].to_numpy(np.float64) for f in frames])
            x = frames[0]["round"].to_numpy()
            mean, std = values.mean(0), values.std(0)
            line, = ax.plot(x, mean, marker="o", markersize=3, label=name)
            if len(frames) > 1:
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for ax, metric in zip(axes, metrics):
        ax.set_title(metric)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
