"""The ``unbiased`` and ``denoise`` families of ``benchmarks/defaults.py`` (issue 13): defaults of
the unbiased objectives (Rel-MF, UBPR, DR Rel-MF) and of the denoisers (T-CE, R-CE, PLD, NBPO),
chosen on validation, never on test.

Unbiased objectives. Worlds with a known truth, each split three ways: the MNAR click log
(train), a *missing-at-random validation sample* (10% of each user's unclicked items, shown
uniformly at random, labelled relevant with probability gamma: what an A/B slot or Coat's and
Yahoo!'s random-exposure sets give a practitioner; scored with Saito's protocol, DCG@5 over the
user's sampled items), and the test: true DCG@5 against gamma over a full ranking (train clicks
excluded). Worlds: ``synthetic`` (``make_world``, 600 x 400, density 0.05, popularity exponent
1), ``semi-ml-100k`` and ``semi-coat`` (Saito's semi-synthetic protocol on the ML-100K ratings and
on Coat's MNAR train ratings, power 1), and ``coat`` itself (clicks = train ratings >= 4; 20% of
the clicks held out and scored by IPS-DCG@5 with popularity propensities as validation, fit on
the rest; test: DCG@5 on the MAR test ratings >= 4, full ranking).

Denoisers. Clean-validation protocols: ``ml-100k-noise`` (ratings >= 4, 70/10/20 per-user
split, 20% random pairs injected into train), ``modcloth`` (DeCA's split: noisy train, validation
and test rating 5), ``synthetic-noise`` (``make_world(1000, 600, density=0.03, noise_rate=0.2)``, 70/10/20 split of
the clicks; the injected false clicks are removed from validation and test). NDCG@20 on the clean
validation part selects, NDCG@20 on the clean test part is reported.

Each grid point trains with per-epoch validation (the best epoch's weights kept, ``best_epoch_``
reported; unbiased grid points stop after ``GRID_PATIENCE`` epochs without a gain), so the epochs
are swept in the same run; the defaults are fitted as a user writes
them (no validation).
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp
from _report import shared_data_dir

from recfb.evaluation import ips_ranking_metrics, mar_ranking_metrics, ranking_metrics, true_relevance_metrics
from recfb.models import MF, MostPopular

# ---------------------------------------------------------------------- unbiased objectives
UNBIASED_WORLDS = ("synthetic", "semi-ml-100k", "semi-coat", "coat")
# loss -> list of product grids of explicit settings. Coarse: the Adam rate x L2 for every loss
# (and L2 for naive BCE on the fused kernel, the comparison). Refined around the coarse winners
# (lr 0.01, L2 0.1): propensity clip, sampled negatives, the negative weight, the batch size (the
# number of Adam steps an epoch takes on a small log), the propensity exponent eta, and UBPR's
# non-negative estimator ("nonnegative": True builds UBPR(nonnegative=True)). The epochs come from
# per-epoch validation up to the default rule's count (100 on these logs), with GRID_PATIENCE.
# Logs above LARGE clicks run the reduced grid (CPU time on the 2-core machine).
_COARSE = {"learning_rate": [0.003, 0.01, 0.03], "regularization": [0.03, 0.06, 0.1, 0.2]}
_CENTRE = {"learning_rate": [0.01], "regularization": [0.1]}
UNBIASED_GRID = {
    "bce": [{"regularization": [0.03, 0.06, 0.1]}],
    "relmf": [_COARSE, {**_CENTRE, "regularization": [0.3]}, {**_CENTRE, "clip": [0.1, 0.05, 0.02]},
              {**_CENTRE, "num_negatives": [1, 8]}, {**_CENTRE, "negative_weight": [2.0, 4.0, "all"]},
              {**_CENTRE, "regularization": [0.03], "negative_weight": [2.0, 4.0]},
              {**_CENTRE, "batch_size": [1024], "negative_weight": [1.0, 2.0, 4.0], "eta": [0.5, 0.25]},
              {**_CENTRE, "eta": [0.75, 1.0]}, {**_CENTRE, "eta": [1.0], "clip": [0.1, 0.02]}],
    "relmf_dr": [{**_CENTRE, "regularization": [0.03, 0.06, 0.1, 0.2]}, {**_CENTRE, "clip": [0.2, 0.05, 0.02]},
                 {**_CENTRE, "negative_weight": [4.0]}, {**_CENTRE, "batch_size": [1024]}, {**_CENTRE, "eta": [1.0]}],
    "ubpr": [_COARSE, {**_CENTRE, "regularization": [0.3]},
             {"learning_rate": [0.01, 0.003], "regularization": [0.1], "clip": [0.1, 0.05, 0.02]},
             {**_CENTRE, "num_negatives": [1, 4, 16]}, {**_CENTRE, "batch_size": [1024]},
             {"learning_rate": [0.003], "regularization": [0.1], "clip": [0.1], "eta": [1.0]},
             {"learning_rate": [0.01, 0.003], "regularization": [0.03, 0.1], "nonnegative": [True]},
             {**_CENTRE, "nonnegative": [True], "batch_size": [1024]}, {**_CENTRE, "nonnegative": [True], "eta": [1.0]},
             {"learning_rate": [0.003], "regularization": [0.1], "batch_size": [1024], "clip": [0.1]},
             {"learning_rate": [0.003], "regularization": [0.1], "batch_size": [1024], "nonnegative": [True]}],
}
GRID_PATIENCE = 20
LARGE = 100000
UNBIASED_GRID_LARGE = {
    "bce": [{"regularization": [0.03, 0.06, 0.1]}],
    "relmf": [{**_CENTRE, "regularization": [0.03, 0.1]}, {**_CENTRE, "clip": [0.1]}, {**_CENTRE, "batch_size": [1024]}],
    "relmf_dr": [_CENTRE],
    "ubpr": [{"learning_rate": [0.003], "regularization": [0.1], "clip": [None, 0.1]}],
}
UNBIASED_QUICK = {"relmf": [{"negative_weight": [1.0, "all"], "iterations": [5]}],
                  "ubpr": [{"iterations": [5], "nonnegative": [True]}]}


def _grid_model(loss, params):
    """``MF(loss=loss, **params)``; ``nonnegative`` (UBPR's estimator, not an MF parameter) builds
    the objective, with the grid point's ``clip`` and ``eta``."""
    params = dict(params)
    if params.pop("nonnegative", False):
        from recfb.losses import UBPR
        return MF(loss=UBPR(eta=params.pop("eta", 0.5), clip=params.pop("clip", None), nonnegative=True), **params)
    return MF(loss=loss, **params)


def _mar_sample(relevance, train, fraction, rng):
    """Missing-at-random labels: ``fraction`` of each user's unclicked items, relevant with
    probability ``relevance`` (stored 5.0 relevant, 1.0 not, for ``threshold=4``)."""
    clicked = train.toarray() > 0
    shown = (rng.random(relevance.shape) < fraction) & ~clicked
    rel = rng.random(relevance.shape) < relevance
    values = np.where(rel, 5.0, 1.0).astype(np.float32) * shown
    return sp.csr_matrix(values)


def world_relevance(name, quick=False, seed=0):
    """``(train clicks, relevance probabilities)`` of a simulated world ("synthetic",
    "semi-ml-100k", "semi-coat"): the click log trains, the relevance is the truth."""
    from recfb.datasets import load, make_world
    from recfb.debias import make_semi_synthetic

    if name == "synthetic":
        n_users, n_items = (300, 200) if quick else (600, 400)
        w = make_world(n_users=n_users, n_items=n_items, density=0.05, popularity_exponent=1.0, seed=seed)
        train = w.clicks.matrix
        train.data[:] = 1.0
        return train, w.relevance_prob
    if name in ("semi-ml-100k", "semi-coat"):
        data = load("ml-100k" if name == "semi-ml-100k" else "coat", data_dir=shared_data_dir(), quiet=True)
        w = make_semi_synthetic(data.matrix if name == "semi-ml-100k" else data.train.matrix, power=1.0, seed=seed)
        return w.train, w.relevance_prob
    raise ValueError(f"world {name!r}, must be one of {UNBIASED_WORLDS}.")


def unbiased_world(name, quick=False, seed=0):
    """``(train, valid_score(model) -> float, test_score(model) -> float, description)``."""
    from recfb.datasets import load
    from recfb.debias import popularity_propensity

    rng = np.random.default_rng(1000 + seed)
    data_dir = shared_data_dir()
    if name == "coat":
        data = load("coat", data_dir=data_dir, quiet=True)
        clicks = data.train.matrix.copy()
        clicks.data = (clicks.data >= 4).astype(np.float32)
        clicks.eliminate_zeros()
        coo = clicks.tocoo()
        hold = rng.random(coo.nnz) < 0.2
        train = sp.csr_matrix((coo.data[~hold], (coo.row[~hold], coo.col[~hold])), shape=clicks.shape)
        valid = sp.csr_matrix((coo.data[hold], (coo.row[hold], coo.col[hold])), shape=clicks.shape)
        theta = popularity_propensity(clicks, eta=0.5)
        test = data.test.matrix
        return (train, lambda m: ips_ranking_metrics(m, train, valid, theta, k=5, ip_cap=100)["ips_dcg@5"],
                lambda m: mar_ranking_metrics(m, train, test, k=5, protocol="full", threshold=4)["dcg@5"],
                "IPS-DCG@5 on 20% held-out clicks / MAR test DCG@5")
    train, gamma = world_relevance(name, quick, seed)
    valid = _mar_sample(gamma, train, 0.1, rng)
    return (train, lambda m: mar_ranking_metrics(m, train, valid, k=5, protocol="saito", threshold=4)["dcg@5"],
            lambda m: true_relevance_metrics(m, train, gamma, k=5)["dcg@5"],
            "MAR-sample DCG@5 (Saito protocol) / true DCG@5")


def _fit(make, train, valid_score=None):
    t0 = time.perf_counter()
    model = make()
    if valid_score is None:
        model.fit(train, show_progress=False)
    else:  # per-epoch validation: the best epoch's weights are kept
        model.fit(train, show_progress=False, valid_items=train, valid_metric=valid_score)
    return model, time.perf_counter() - t0


def unbiased_defaults(train, valid_score, test_score, families, quick=False):
    """Figures of the defaults as a user writes them (and MostPopular beside them); the quick
    smoke run shortens them to 3 epochs."""
    rows = {}
    makers = {"MostPopular()": MostPopular, 'MF(loss="bce")': lambda: MF(loss="bce")}
    makers.update({f'MF(loss="{loss}")': (lambda loss=loss: MF(loss=loss)) for loss in families})
    if quick:
        makers = {k: (mk if k == "MostPopular()" else (lambda mk=mk: _short(mk()))) for k, mk in makers.items()}
    for name, make in makers.items():
        model, secs = _fit(make, train)
        rows[name] = {"valid": valid_score(model), "test": test_score(model), "fit_s": secs,
                      "derived": _derived(model)}
    return rows


def _derived(model):
    keys = ("optimizer", "iterations", "learning_rate", "regularization", "num_negatives", "negative_weight")
    return {k: getattr(model, k + "_") for k in keys if hasattr(model, k + "_")}


# ---------------------------------------------------------------------- denoisers
DENOISE_DATASETS = ("ml-100k-noise", "modcloth", "synthetic-noise")
K = 20


def _denoisers():
    from recfb.denoise import PLD, RCE, TCE
    from recfb.losses import NBPO
    # the default rows are the centre (drop_rate 0.2, beta 0.1, temperature 0.3, flip L2 0.3);
    # the grid adds the points either side (RESULTS.md "Defaults (issue 13)", fourth and fifth
    # sessions; NBPO's flip L2 from 0.3 up is the constant-flip limit, so 1e-3 and 0.25 bracket it)
    return {"tce": ("bce", TCE, "drop_rate", [0.1]),
            "rce": ("bce", RCE, "beta", [0.05, 0.25]),
            "pld": ("bpr", PLD, "temperature", [0.1, 1.0]),
            "nbpo": ("bce", NBPO, "flip_regularization", [1e-3, 0.25])}


DENOISE_QUICK = {"tce": [0.2], "rce": [0.1]}
PLAIN_ON_ADAM = True


def denoise_split(name, quick=False, seed=0):
    """``(train, valid, test)`` csr, binary; valid and test hold clean positives only."""
    from recfb.data.split import random_holdout
    from recfb.datasets import inject_noise, load, make_world
    data_dir = shared_data_dir()

    def binary(inter):
        X = sp.csr_matrix(inter.matrix, dtype=np.float32)
        X.data[:] = 1.0
        return X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "ml-100k-noise":
            data = load("ml-100k", data_dir=data_dir, quiet=True)
            clean = data.subset(data.values >= 4)
            train, valid, test = random_holdout(clean, test_fraction=0.2, validation_fraction=0.1, seed=seed)
            noisy, _ = inject_noise(train, 0.2, exclude=(valid, test), seed=seed)
            return binary(noisy), binary(valid), binary(test)
        if name == "modcloth":
            d = load("modcloth-deca", data_dir=data_dir, quiet=True)
            return binary(d.train), binary(d.valid.subset(d.valid.values >= 5)), binary(d.test_clean)
        if name == "synthetic-noise":
            n_users, n_items = (400, 300) if quick else (1000, 600)
            w = make_world(n_users=n_users, n_items=n_items, density=0.03, noise_rate=0.2, seed=seed)
            clicks = w.clicks
            train, valid, test = random_holdout(clicks, test_fraction=0.2, validation_fraction=0.1, seed=seed)
            # the world's false clicks are known: clean held-out parts keep only true clicks
            rel = w.relevant & w.exposed

            def clean(part):
                X = binary(part)
                coo = X.tocoo()
                keep = rel[coo.row, coo.col]
                return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=X.shape)
            return binary(train), clean(valid), clean(test)
    raise ValueError(f"dataset {name!r}, must be one of {DENOISE_DATASETS}.")


def ndcg(model, train, part):
    return ranking_metrics(model, train, part, k=K)[f"ndcg@{K}"]


# ---------------------------------------------------------------------- sweeps
def _points(grids):
    import itertools
    for grid in grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            yield dict(zip(keys, values))


def _log(quiet, **row):
    if not quiet:
        import json
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, default=str),
              flush=True)


def sweep_unbiased(worlds, quick, quiet, losses=None):
    """Per world: the defaults' rows and, per loss, every grid point (validation-selected)."""
    grid = UNBIASED_QUICK if quick else UNBIASED_GRID
    losses = [loss for loss in (losses or grid) if loss in grid]
    out = []
    for name in worlds:
        train, valid_score, test_score, how = unbiased_world(name, quick)
        defaults = unbiased_defaults(train, valid_score, test_score, ("relmf", "relmf_dr", "ubpr"), quick)
        for label, r in defaults.items():
            _log(quiet, family="unbiased", world=name, default=label, **{k: r[k] for k in ("valid", "test", "fit_s")},
                 derived=r["derived"])
        points = {}
        world_grid = UNBIASED_GRID_LARGE if (train.nnz > LARGE and not quick) else grid
        for loss in losses:
            res = []
            for params in _points(world_grid.get(loss, [])):
                model, secs = _fit(lambda p=params: _grid_model(loss, {"patience": GRID_PATIENCE, **p}), train,
                                   valid_score)
                r = {"params": params, "valid": max(h.get("valid", -np.inf) for h in model.history_),
                     "best_epoch": model.best_epoch_, "test": test_score(model), "fit_s": secs}
                res.append(r)
                _log(quiet, family="unbiased", world=name, loss=loss, **r)
            points[loss] = sorted(res, key=lambda r: -r["valid"])
        out.append({"dataset": name, "shape": f"{train.shape[0]} x {train.shape[1]}, {train.nnz} clicks",
                    "how": how, "defaults": defaults, "points": points})
    return out


def sweep_denoise(datasets, quick, quiet, methods=None):
    """Per dataset: plain losses and denoisers at their defaults (as a user writes them, and the
    plain loss on the denoisers' Adam path), and each denoiser's grid (clean-validation-selected)."""
    from recfb.losses import NBPO
    grid = {k: v for k, v in _denoisers().items() if k in (methods or _denoisers())}
    out = []
    for name in datasets:
        train, valid, test = denoise_split(name, quick)

        def vscore(m, train=train, valid=valid):
            return ndcg(m, train, valid)
        makers = {'MF(loss="bce")': lambda: MF(loss="bce"), 'MF(loss="bpr")': lambda: MF(loss="bpr")}
        if PLAIN_ON_ADAM:  # the plain losses on the denoisers' path: what the path costs, apart from denoising
            makers.update({'MF(loss="bce", optimizer="adam")': lambda: MF(loss="bce", optimizer="adam"),
                           'MF(loss="bpr", optimizer="adam")': lambda: MF(loss="bpr", optimizer="adam")})
        for plain, cls, _, _ in grid.values():
            if cls is NBPO:
                makers['MF(loss="nbpo")'] = lambda: MF(loss="nbpo")
            else:
                makers[f'MF(loss="{plain}", denoise={cls.__name__}())'] = lambda p=plain, c=cls: MF(loss=p, denoise=c())
        if quick:
            makers = {k: (lambda mk=mk: _short(mk())) for k, mk in makers.items()}
        defaults = {}
        for label, make in makers.items():
            model, secs = _fit(make, train)
            defaults[label] = {"valid": vscore(model), "test": ndcg(model, train, test), "fit_s": secs,
                               "derived": _derived(model)}
            _log(quiet, family="denoise", dataset=name, default=label, **{k: defaults[label][k] for k in
                                                                           ("valid", "test", "fit_s")},
                 derived=defaults[label]["derived"])
        points = {}
        for key, (plain, cls, param, values) in grid.items():
            res = []
            for value in (DENOISE_QUICK.get(key, values[:1]) if quick else values):
                if cls is NBPO:
                    make = lambda v=value, p=param: MF(loss=NBPO(**{p: v}))  # noqa: E731
                else:
                    make = lambda v=value, p=param, c=cls, pl=plain: MF(loss=pl, denoise=c(**{p: v}))  # noqa: E731
                if quick:
                    make = (lambda mk=make: _short(mk()))  # noqa: E731
                model, secs = _fit(make, train, vscore)
                r = {"params": {param: value}, "valid": max(h.get("valid", -np.inf) for h in model.history_),
                     "best_epoch": model.best_epoch_, "test": ndcg(model, train, test), "fit_s": secs}
                res.append(r)
                _log(quiet, family="denoise", dataset=name, method=key, **r)
            points[key] = sorted(res, key=lambda r: -r["valid"])
        out.append({"dataset": name, "shape": f"{train.shape[0]} x {train.shape[1]}, {train.nnz} train",
                    "defaults": defaults, "points": points})
    return out


def _short(model):
    model.iterations = 3
    return model


def report_unbiased(rows, quick):
    grid = UNBIASED_QUICK if quick else UNBIASED_GRID
    import json
    lines = [f"### unbiased: grids {json.dumps(grid)}" + ("" if quick else f"; above {LARGE} clicks "
             f"{json.dumps(UNBIASED_GRID_LARGE)}") + " (epochs by per-epoch validation)", ""]
    for r in rows:
        d = r["defaults"]
        pop, naive = d["MostPopular()"]["test"], d['MF(loss="bce")']["test"]
        lines += [f"**{r['dataset']}** ({r['shape']}; validation / test: {r['how']})", "",
                  "| model | valid | test | test / MostPopular | test / naive MF | fit s | derived |",
                  "|---|---|---|---|---|---|---|"]
        for label, x in d.items():
            derived = ", ".join(f"{k}={v}" for k, v in x["derived"].items()) or "-"
            lines.append(f"| `{label}` | {x['valid']:.4f} | {x['test']:.4f} | {x['test'] / pop:.3f} | "
                         f"{x['test'] / naive:.3f} | {x['fit_s']:.1f} | {derived} |")
        lines += ["", "| loss | grid point (validation order) | valid | best epoch | test | test / naive MF |",
                  "|---|---|---|---|---|---|"]
        for loss, pts in r["points"].items():
            for i, p in enumerate(pts):
                lines.append(f"| {loss if i == 0 else ''} | {'**' if i == 0 else ''}{json.dumps(p['params'])}"
                             f"{'**' if i == 0 else ''} | {p['valid']:.4f} | {p['best_epoch']} | {p['test']:.4f} | "
                             f"{p['test'] / naive:.3f} |")
        lines.append("")
    return lines


def report_denoise(rows, quick):
    import json
    grid = {k: (v[2], DENOISE_QUICK.get(k, v[3][:1]) if quick else v[3]) for k, v in _denoisers().items()}
    lines = [f"### denoise: grid {json.dumps(grid)} (epochs by per-epoch validation), NDCG@{K}", ""]
    for r in rows:
        d = r["defaults"]
        lines += [f"**{r['dataset']}** ({r['shape']})", "",
                  "| model | valid | test | test / plain at defaults | fit s | derived |", "|---|---|---|---|---|---|"]
        for label, x in d.items():
            plain = 'MF(loss="bpr")' if 'loss="bpr"' in label else 'MF(loss="bce")'
            derived = ", ".join(f"{k}={v}" for k, v in x["derived"].items()) or "-"
            lines.append(f"| `{label}` | {x['valid']:.4f} | {x['test']:.4f} | {x['test'] / d[plain]['test']:.3f} | "
                         f"{x['fit_s']:.1f} | {derived} |")
        lines += ["", "| method | grid point (validation order) | valid | best epoch | test |", "|---|---|---|---|---|"]
        for key, pts in r["points"].items():
            for i, p in enumerate(pts):
                lines.append(f"| {key if i == 0 else ''} | {json.dumps(p['params'])} | {p['valid']:.4f} | "
                             f"{p['best_epoch']} | {p['test']:.4f} |")
        lines.append("")
    return lines


class _Family:
    """How ``benchmarks/defaults.py`` runs a family with its own protocol: ``pick`` its datasets
    (``--datasets`` filtered to the family's own; the quick smoke run takes ``quick``)."""

    def __init__(self, sweep, report, datasets, quick):
        self.sweep, self.report, self.datasets, self.quick_datasets = sweep, report, datasets, quick

    def pick(self, asked, quick):
        if asked:
            own = [d for d in asked if d in self.datasets]
            return own or (self.quick_datasets if quick else list(self.datasets))
        return self.quick_datasets if quick else list(self.datasets)


SPECIAL = {"unbiased": _Family(sweep_unbiased, report_unbiased, UNBIASED_WORLDS, ["semi-coat"]),
           "denoise": _Family(sweep_denoise, report_denoise, DENOISE_DATASETS, ["synthetic-noise"])}
