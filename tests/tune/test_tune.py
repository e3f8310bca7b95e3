"""recfb.tune: seeded search, fixed parameters, spaces, pruning, storage resume and sharing,
every protocol, the CLI, bad input, and every model's declared search space."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
import scipy.sparse as sp

import recfb
from recfb import tune
from recfb.data import Interactions, split
from recfb.datasets import make_world
from recfb.evaluation import ips_ranking_metrics, ranking_metrics, sampled_ranking_metrics
from recfb.models import BPR, CML, EASE, MF, BERT4Rec, ImplicitALS, ImplicitBPR, ItemKNN, LightGCN, MostPopular, SASRec, gSASRec
from recfb.models.base import Recommender
from recfb.utils.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SMALL_SPACE = {"learning_rate": ("float", 1e-3, 0.1, "log"), "factors": ("int", 4, 16, "log")}


@pytest.fixture(scope="module")
def data():
    world = make_world(n_users=200, n_items=120, density=0.06, seed=0)
    train, valid = split.random_holdout(world.clicks, test_fraction=0.2, seed=0)
    return train.matrix, valid.matrix


def bpr(**kw):
    # Adam, fixed: the tests' learning rates mean Adam's, whatever the class default optimizer
    return BPR(**{"iterations": 3, "batch_size": 512, "device": "cpu", "optimizer": "adam", **kw})


def run(model, data, **kw):
    kw.setdefault("show_progress", False)
    kw.setdefault("n_trials", 3)
    return tune.search(model, data[0], data[1], **kw)


def brute_ndcg(model, train, valid, k):
    """NDCG@k by brute force: dense scores, train items to -inf, argsort, binary gains."""
    scores = model.score(np.arange(train.shape[0]), train).astype(np.float64)
    scores[train.toarray() > 0] = -np.inf
    V = valid.toarray() > 0
    out = []
    for u in np.flatnonzero(V.any(axis=1)):
        top = np.argsort(-scores[u], kind="stable")[:k]
        dcg = sum(1 / np.log2(r + 2) for r, i in enumerate(top) if V[u, i])
        idcg = sum(1 / np.log2(r + 2) for r in range(min(k, V[u].sum())))
        out.append(dcg / idcg)
    return float(np.mean(out))


def params_of(result):
    return [t.params for t in result.study.trials]


# ---------------------------------------------------------------------- search
def test_same_seed_same_trials_other_seed_other_trials(data):
    a = run(bpr(), data, space=SMALL_SPACE, seed=3)
    b = run(bpr(), data, space=SMALL_SPACE, seed=3)
    c = run(bpr(), data, space=SMALL_SPACE, seed=4)
    assert params_of(a) == params_of(b)
    assert [t.value for t in a.study.trials] == [t.value for t in b.study.trials]
    assert params_of(a) != params_of(c)


def test_best_value_is_the_metric_of_best_model_on_valid(data):
    train, valid = data
    res = run(bpr(), data, space=SMALL_SPACE, n_trials=4)
    completed = [t.value for t in res.study.trials if t.state.name == "COMPLETE"]
    assert res.best_trial_value == max(completed)
    assert res.best_value == pytest.approx(res.best_trial_value, abs=1e-12)
    assert res.best_value == pytest.approx(brute_ndcg(res.best_model, train, valid, 10), abs=1e-9)
    assert res.best_model.get_params()["learning_rate"] == res.best_params["learning_rate"]
    assert res.best_model.get_params()["factors"] == res.best_params["factors"]
    df = res.trials
    assert len(df) == 4 and {"value", "duration", "state", "params_factors", "params_learning_rate"} <= set(df.columns)


def test_the_first_trial_is_the_model_as_passed(data):
    res = run(EASE(), data, n_trials=3)
    # l2=None: the start trial is the lambda fit derives from the training data (independent formula)
    derived = round(70 * np.sqrt(data[0].nnz / data[0].shape[1]) * float((data[0].data ** 2).mean()), 4)
    assert res.study.trials[0].params == {"l2": derived, "dropout": EASE().dropout}
    default = EASE().fit(data[0])
    assert res.study.trials[0].value == pytest.approx(ranking_metrics(default, *data, k=10)["ndcg@10"], abs=1e-12)
    assert res.best_value >= res.study.trials[0].value
    # values outside the space are not enqueued; start_from_model=False samples from the first trial
    res = run(EASE(), data, n_trials=1, space={"l2": ("float", 1.0, 10.0)})
    assert 1.0 <= res.study.trials[0].params["l2"] <= 10.0
    res = run(EASE(), data, n_trials=1, start_from_model=False)
    assert res.study.trials[0].params["l2"] != derived
    # a model that derives its learning rate and L2 starts from the values its fit takes
    m = bpr()
    m.learning_rate = m.regularization = None
    res = run(m, data, n_trials=1, space=SMALL_SPACE | {"regularization": ("float", 1e-4, 0.1, "log")})
    fitted = bpr(learning_rate=None, regularization=None).fit(data[0], show_progress=False)
    start = res.study.trials[0].params  # factors 64 lies outside SMALL_SPACE: sampled
    assert (start["learning_rate"], start["regularization"]) == (fitted.learning_rate_, fitted.regularization_)


def test_refit_false_skips_the_final_fit(data):
    res = run(EASE(), data, n_trials=2, refit=False)
    assert res.best_model is None and res.best_value == res.study.best_value == res.best_trial_value


def test_explicit_parameters_stay_fixed_and_leave_the_default_space(data):
    res = run(bpr(factors=8, learning_rate=0.03), data, n_trials=3)
    for p in params_of(res):
        assert "factors" not in p and "learning_rate" not in p
        assert "regularization" in p  # the rest of BPR.search_space is tuned
    assert res.fixed_params["factors"] == 8
    assert res.best_model.factors == 8 and res.best_model.learning_rate == 0.03


def test_space_override_dict_and_callable(data):
    res = run(bpr(), data, space={"regularization": ("categorical", [1e-4, 1e-2])})
    assert all(set(p) == {"regularization"} and p["regularization"] in (1e-4, 1e-2) for p in params_of(res))

    from recfb.denoise import TCE

    def space(trial):
        return {"denoise": TCE(trial.suggest_float("drop_rate", 0.05, 0.3), warmup=0.3)}
    res = run(MF(loss="bce", iterations=3, batch_size=512, device="cpu"), data, space=space)
    assert isinstance(res.best_params["denoise"], TCE)
    assert res.best_params["denoise"].drop_rate == res.study.best_trial.params["drop_rate"]
    assert res.best_model.denoise.drop_rate == res.study.best_trial.params["drop_rate"]


def _mf_denoised(denoiser):
    return MF(loss="bce", iterations=2, batch_size=512, device="cpu", optimizer="adam", denoise=denoiser)


def test_a_denoisers_declared_space_joins_the_default_space(data):
    """MF(denoise=RCE()) tunes RCE's beta as "denoise__beta" beside MF's own parameters: the
    first trial holds the default beta, the tuned copy gets a new RCE with the best beta and
    its other parameters as they were, and the model passed in is untouched."""
    from recfb.denoise import RCE

    model = _mf_denoised(RCE(negatives=True))
    res = run(model, data, n_trials=3)
    trials = params_of(res)
    assert all("denoise__beta" in p and 0.02 <= p["denoise__beta"] <= 0.5 for p in trials)
    assert {"factors", "learning_rate"} <= set(trials[0])
    assert trials[0]["denoise__beta"] == 0.1  # the model's own value starts the study
    assert len({p["denoise__beta"] for p in trials}) == 3
    best = res.best_model.denoise
    assert isinstance(best, RCE) and best is not model.denoise
    assert best.beta == res.best_params["denoise__beta"] and best.negatives is True
    assert model.denoise.beta == 0.1 and not hasattr(model, "net_")


def test_a_component_parameter_set_on_it_stays_fixed_and_a_dict_space_can_name_one(data):
    from recfb.denoise import RCE, TCE

    res = run(_mf_denoised(RCE(beta=0.2)), data, n_trials=2)
    assert all("denoise__beta" not in p for p in params_of(res))
    assert res.best_model.denoise.beta == 0.2
    res = run(_mf_denoised(TCE()), data, n_trials=2, space={"denoise__drop_rate": ("float", 0.05, 0.1)})
    assert all(set(p) == {"denoise__drop_rate"} and 0.05 <= p["denoise__drop_rate"] <= 0.1 for p in params_of(res))
    assert res.best_model.denoise.drop_rate == res.best_params["denoise__drop_rate"]
    assert res.best_model.denoise.warmup == 0.3 and res.best_model.denoise.criterion == "auto"


@pytest.mark.parametrize("space,match", [
    ({"denoise__nope": ("float", 0.1, 0.2)}, "'nope' is not a parameter of RCE"),
    ({"factors__x": ("int", 1, 2)}, "'factors' is 8, not a component"),
    ({"denoise": ("categorical", [None]), "denoise__beta": ("float", 0.1, 0.2)}, "both 'denoise' and"),
    ({"nope__beta": ("float", 0.1, 0.2)}, "'nope__beta' is not a parameter of MF"),
])
def test_a_bad_component_parameter_is_refused_by_name(data, space, match):
    from recfb.denoise import RCE

    with pytest.raises(ValueError, match=match):
        run(MF(loss="bce", factors=8, iterations=1, device="cpu", denoise=RCE()), data, n_trials=1, space=space)
    with pytest.raises(ValueError, match="'denoise' is None, not a component"):
        run(MF(loss="bce", iterations=1, device="cpu"), data, n_trials=1, space={"denoise__beta": ("float", 0.1, 0.2)})


def test_a_clearly_bad_trial_is_pruned_early(data):
    # from epoch 2 on, ThresholdPruner prunes an epoch below 0.06: a learning rate of 1e-7 stays at
    # the random model's ~0.04, 0.05 passes 0.08 by then
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="p", direction="maximize")
    study.enqueue_trial({"learning_rate": 0.05})
    study.enqueue_trial({"learning_rate": 1e-7})
    res = run(bpr(iterations=5), data, storage=storage, study_name="p", n_trials=2,
              space={"learning_rate": ("float", 1e-7, 0.1, "log")},
              pruner=optuna.pruners.ThresholdPruner(lower=0.06, n_warmup_steps=2))
    good, bad = res.study.trials
    assert good.state.name == "COMPLETE" and len(good.intermediate_values) == 5
    assert bad.state.name == "PRUNED" and len(bad.intermediate_values) == 2  # stopped after epoch 2 of 5
    assert res.best_params == {"learning_rate": 0.05}


def test_median_pruner_stops_the_worse_trial(data):
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="m", direction="maximize")
    for lr in (0.05, 1e-6):
        study.enqueue_trial({"learning_rate": lr})
    res = run(bpr(iterations=6), data, storage=storage, study_name="m", n_trials=2,
              space={"learning_rate": ("float", 1e-6, 0.1, "log")},
              pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=2))
    good, bad = res.study.trials
    assert good.state.name == "COMPLETE"
    assert bad.state.name == "PRUNED" and len(bad.intermediate_values) == 2  # of 6 epochs


def test_default_pruner_waits_half_of_the_run(data):
    from recfb.tune._search import pruner_warmup
    # the rule, against hand-computed values: max(2, ceil(0.5 * epochs)); no epochs: 2
    assert [pruner_warmup({"iterations": n}) for n in (1, 5, 11, 20, 100)] == [2, 3, 6, 10, 50]
    assert pruner_warmup({"iterations": None}) == pruner_warmup({}) == 2
    res = run(bpr(iterations=15), data, n_trials=1, space=SMALL_SPACE)
    assert res.study.pruner._n_warmup_steps == 8
    # derived epochs count too: BPR on the kernel derives clip(4e7 / nnz, 30, 100) = 100 here
    res = run(BPR(device="cpu"), data, n_trials=1, space={"factors": ("int", 4, 8)})
    assert res.study.pruner._n_warmup_steps == 50
    # and no trial is stopped before epoch 8 (epochs count from 1; the old fixed rule stopped at 2)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="w", direction="maximize")
    for lr in (0.05, 1e-6):
        study.enqueue_trial({"learning_rate": lr})
    res = run(bpr(iterations=15), data, storage=storage, study_name="w", n_trials=7,
              space={"learning_rate": ("float", 1e-6, 0.1, "log")})
    pruned = [t for t in res.study.trials if t.state.name == "PRUNED"]
    assert pruned and all(len(t.intermediate_values) >= 8 for t in pruned)


def test_default_pruner_waits_for_the_third_validation(sequences):
    # a model validated every 3 epochs: the epoch warm-up (max(2, ceil(0.5 * 12)) = 6) alone would
    # judge a trial on its second validation; the default pruner waits for PRUNER_MIN_VALIDATIONS
    from recfb.tune._search import PRUNER_MIN_VALIDATIONS
    assert PRUNER_MIN_VALIDATIONS == 3
    train, valid, _ = sequences
    model = SASRec(iterations=12, eval_every=3, batch_size=32, factors=16, device="cpu")
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="v", direction="maximize")
    for lr in [1e-2] * 5 + [1e-7, 1e-7]:  # five startup trials that learn, then two that cannot
        study.enqueue_trial({"learning_rate": lr})
    res = tune.search(model, train, valid, protocol="loo", n_trials=7, storage=storage, study_name="v",
                      show_progress=False, space={"learning_rate": ("float", 1e-7, 1e-2, "log")})
    states = [t.state.name for t in res.study.trials]
    assert states == ["COMPLETE"] * 5 + ["PRUNED"] * 2
    assert all(sorted(t.intermediate_values) == [3, 6, 9] for t in res.study.trials[5:])  # not at 3 or 6
    assert all(len(t.intermediate_values) == 4 for t in res.study.trials[:5])
    # a pruner passed by the caller is used as given: the same trials stop at their first validation
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="v", direction="maximize")
    for lr in [1e-2] * 5 + [1e-7]:
        study.enqueue_trial({"learning_rate": lr})
    res = tune.search(model, train, valid, protocol="loo", n_trials=6, storage=storage, study_name="v",
                      show_progress=False, space={"learning_rate": ("float", 1e-7, 1e-2, "log")},
                      pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3))
    assert sorted(res.study.trials[5].intermediate_values) == [3] and res.study.trials[5].state.name == "PRUNED"


def test_sqlite_storage_resumes_the_study(data, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = params_of(run(bpr(), data, space=SMALL_SPACE, storage=url, study_name="s", n_trials=2))
    second = run(bpr(), data, space=SMALL_SPACE, storage=url, study_name="s", n_trials=2)
    assert len(first) == 2 and len(second.study.trials) == 4
    p = params_of(second)
    assert p[:2] == first and p[2] not in first  # continued, not restarted with the same draws
    loaded = optuna.load_study(study_name="s", storage=url)
    assert len(loaded.trials) == 4
    # a study made for another model or metric is not silently continued
    with pytest.raises(ValueError, match="made for model 'BPR', not 'EASE'"):
        run(EASE(), data, storage=url, study_name="s", n_trials=1)


def test_two_processes_share_one_journal_storage(data, tmp_path):
    X, V = data
    sp.save_npz(tmp_path / "X.npz", X)
    sp.save_npz(tmp_path / "V.npz", V)
    script = textwrap.dedent(f"""
        import sys, scipy.sparse as sp
        from recfb import tune
        from recfb.models import EASE
        X, V = sp.load_npz({str(tmp_path / 'X.npz')!r}), sp.load_npz({str(tmp_path / 'V.npz')!r})
        tune.search(EASE(), X, V, n_trials=2, seed=int(sys.argv[1]), storage={str(tmp_path / 'journal.log')!r},
                    study_name="shared", show_progress=False)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(s)], cwd=ROOT) for s in (0, 1)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    res = run(EASE(), data, storage=str(tmp_path / "journal.log"), study_name="shared", n_trials=1, seed=2)
    assert len(res.study.trials) == 5
    assert len({t.params["l2"] for t in res.study.trials}) == 5  # the workers did not repeat each other


def test_start_trial_is_enqueued_only_by_the_process_that_creates_the_study(data, tmp_path):
    # The race the two-process test can hit: a second worker reaches the storage after the first
    # created the study but before its start trial is visible. That worker must not enqueue the
    # model's own parameters again (CI once saw EASE's l2=500 run twice).
    storage = str(tmp_path / "journal.log")
    optuna.create_study(storage=tune.open_storage(storage), study_name="raced", direction="maximize")
    start = EASE().derived_params(data[0])["l2"]
    res = run(EASE(), data, storage=storage, study_name="raced", n_trials=2, seed=1)
    assert start not in [t.params["l2"] for t in res.study.trials]  # the joining worker sampled both
    res = run(EASE(), data, storage=str(tmp_path / "fresh.log"), study_name="fresh", n_trials=2, seed=1)
    assert res.study.trials[0].params["l2"] == start  # the creator runs the start trial first


# ---------------------------------------------------------------------- protocols
def test_sampled_protocol(data):
    train, valid = data
    res = run(EASE(), data, protocol=tune.Sampled(n_negatives=50, seed=1), metric="hit_rate@5")
    ref = sampled_ranking_metrics(res.best_model, train, valid, n_negatives=50, k=5, seed=1)["hit_rate@5"]
    assert res.best_value == pytest.approx(ref, abs=1e-12)
    assert run(EASE(), data, protocol="sampled", metric="mrr", n_trials=1).best_value > 0


def test_ips_protocol_on_an_mnar_log(data):
    train, valid = data
    theta = np.linspace(0.05, 1.0, train.shape[1])
    res = run(MF(iterations=3, batch_size=512, device="cpu", optimizer="adam"), data,
              protocol=tune.IPS(propensity=theta, ip_cap=20),
              metric="ips_dcg@5", space=SMALL_SPACE)
    ref = ips_ranking_metrics(res.best_model, train, valid, theta, k=5, ip_cap=20)["ips_dcg@5"]
    assert res.best_value == pytest.approx(ref, abs=1e-12)
    res = run(EASE(), data, protocol="ips", metric="snips_recall@10", n_trials=1)  # popularity propensities
    assert 0 < res.best_value <= 1


def test_clean_protocol_keeps_trusted_validation_entries(data):
    train, valid = data
    ratings = valid.copy()
    ratings.data = np.where(np.arange(ratings.nnz) % 2 == 0, 5.0, 2.0).astype(np.float32)
    res = tune.search(EASE(), train, ratings, protocol=tune.Clean(threshold=4), n_trials=2, show_progress=False)
    clean = ratings.copy()
    clean.data[clean.data < 4] = 0
    clean.eliminate_zeros()
    assert res.best_value == pytest.approx(ranking_metrics(res.best_model, train, clean, k=10)["ndcg@10"], abs=1e-12)
    assert res.best_value != pytest.approx(ranking_metrics(res.best_model, train, ratings, k=10)["ndcg@10"])
    assert run(EASE(), data, protocol="clean", n_trials=1).best_value > 0


def test_full_ranking_strong_generalisation_folds_users_in(data):
    train, valid = data
    held = np.arange(150, 200)
    keep = np.ones(train.shape[0], bool)
    keep[held] = False
    fit_X = sp.diags(keep.astype(np.float32)) @ train  # held-out users have no training rows
    fold_in = sp.diags((~keep).astype(np.float32)) @ train
    target = sp.diags((~keep).astype(np.float32)) @ valid
    proto = tune.FullRanking(fold_in=sp.csr_matrix(fold_in))
    res = tune.search(EASE(), sp.csr_matrix(fit_X), sp.csr_matrix(target), protocol=proto, n_trials=2,
                      show_progress=False)
    ref = ranking_metrics(res.best_model, sp.csr_matrix(fold_in), sp.csr_matrix(target), k=10,
                          recalculate_user=True)["ndcg@10"]
    assert res.best_value == pytest.approx(ref, abs=1e-12) and ref > 0


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 8)
    items = (users * 3 + np.tile(np.arange(8), 60)) % 40 + rng.integers(0, 2, users.size)  # near-deterministic next item
    inter = Interactions.from_arrays(users, items)
    return split.leave_one_out(inter, by="row")


def test_leave_one_out_protocol_for_sequential_models(sequences):
    train, valid, _ = sequences
    model = SASRec(iterations=3, batch_size=32, factors=16, device="cpu")
    res = tune.search(model, train, valid, protocol="loo", n_trials=2, show_progress=False,
                      space={"learning_rate": ("float", 1e-3, 1e-2, "log"), "dropout": ("float", 0.0, 0.3)})
    V = sp.csr_matrix(valid.with_id_space(train.user_map, train.item_map).matrix)
    ref = ranking_metrics(res.best_model, res.best_model.history_matrix(), V, k=10)["ndcg@10"]
    assert res.best_value == pytest.approx(ref, abs=1e-12)
    assert all(len(t.intermediate_values) == 3 for t in res.study.trials)  # validated every epoch
    res = tune.search(model, train, valid, protocol=tune.LeaveOneOut(n_negatives=20), metric="hit_rate@10",
                      n_trials=1, show_progress=False, space={"dropout": ("float", 0.0, 0.3)})
    assert 0 <= res.best_value <= 1
    with pytest.raises(ValueError, match="sequential"):
        tune.search(model, train, valid, protocol="full", n_trials=1, show_progress=False)
    with pytest.raises(ValueError, match="sequential models"):
        tune.search(EASE(), train.matrix, valid.matrix, protocol="loo", n_trials=1, show_progress=False)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, error, match", [
    ({"metric": "ndgc@10"}, ValueError, "ndgc@10.*valid: precision@k"),
    ({"metric": "ndcg@0"}, ValueError, "ndcg@0"),
    ({"metric": "ndcg@10", "protocol": "ips"}, ValueError, "ips_dcg@k"),
    ({"space": {"neighbours": ("int", 1, 5)}}, ValueError, "'neighbours' is not a parameter of EASE"),
    ({"space": {"l2": ("float", 10.0, 1.0)}}, ValueError, "low == 10.0 must be <= high"),
    ({"space": {"l2": ("float", 0.0, 1.0, "log")}}, ValueError, "log range needs low > 0"),
    ({"space": {"l2": ("uniform", 0.0, 1.0)}}, ValueError, "first element"),
    ({"n_trials": 0}, ValueError, "n_trials == 0"),
    ({"timeout": 0}, ValueError, "timeout == 0"),
    ({"timeout": -5.0}, ValueError, "timeout == -5.0"),
    ({"n_trials": None}, ValueError, "never end"),
    ({"protocol": "kfold"}, ValueError, "protocol == 'kfold'"),
    ({"storage": "sqlite:////no/such/folder/study.db"}, ValueError, "sqlite:////no/such/folder/study.db"),
    ({"storage": "nosuchdb://host/x"}, ValueError, "nosuchdb://host/x"),
    ({"storage": "/no/such/folder/journal.log"}, ValueError, "/no/such/folder/journal.log"),
    ({"valid_items": None}, ValueError, "valid_items"),
])
def test_bad_input_names_the_value(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        run(EASE(), data, **kwargs)


def test_empty_validation_and_bad_models(data):
    train, valid = data
    with pytest.raises(DataError, match="valid_X is empty"):
        tune.search(EASE(), train, sp.csr_matrix(valid.shape, dtype=np.float32), show_progress=False)
    with pytest.raises(DataError, match="valid_X"):
        tune.search(EASE(), train, valid[:, :10], show_progress=False)
    with pytest.raises(TypeError, match="instance"):
        tune.search(EASE, train, valid, show_progress=False)
    with pytest.raises(ValueError, match="set on the model"):
        run(EASE(l2=5.0), data, space={"l2": ("float", 1.0, 10.0)})


def test_progress_bar_shows_and_is_silenced(data, capsys):
    run(EASE(), data, n_trials=2, show_progress=True)
    assert "tuning EASE" in capsys.readouterr().err
    run(EASE(), data, n_trials=2, show_progress=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------- CLI
def test_cli_tune_end_to_end(tmp_path, capsys):
    from recfb.cli.main import main

    out, png = tmp_path / "ease.npz", tmp_path / "tune.png"
    assert main(["--quiet", "tune", "--dataset", "synthetic", "--model", "ease", "--trials", "3", "--param",
                 "dropout=0.1", "-o", str(out), "--plot", str(png), "--storage", str(tmp_path / "j.log")]) == 0
    text = capsys.readouterr()
    assert "best parameters" in text.out and "test (refitted best model" in text.out and text.err == ""
    model = recfb.load(out)
    assert isinstance(model, EASE) and model.dropout == 0.1  # --param fixes it
    assert model.metadata_["tuned"]["params"]["l2"] == model.l2
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    # the same storage continues the study
    assert main(["--quiet", "tune", "--dataset", "synthetic", "--model", "ease", "--trials", "2", "--param",
                 "dropout=0.1", "-o", str(out), "--storage", str(tmp_path / "j.log")]) == 0
    assert "5 trials in the study" in capsys.readouterr().out
    assert main(["--quiet", "tune", "--dataset", "synthetic", "--model", "ease", "--metric", "nope@3",
                 "-o", str(out)]) == 2
    assert "nope@3" in capsys.readouterr().err
    assert main(["--quiet", "tune", "--dataset", "synthetic", "--model", "ease", "--param", "bogus=1",
                 "-o", str(out)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_install(data, tmp_path, monkeypatch):
    import builtins

    res = run(EASE(), data, n_trials=1)
    real_import = builtins.__import__

    def no_matplotlib(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        tune.plot(res, tmp_path / "x.png")


# ---------------------------------------------------------------------- declared spaces
ALL_MODELS = [MostPopular, ItemKNN, EASE, MF, BPR, CML, LightGCN, ImplicitALS, ImplicitBPR, SASRec, gSASRec, BERT4Rec]


def test_every_model_class_is_covered():
    exported = {c for c in vars(recfb.models).values() if isinstance(c, type) and issubclass(c, Recommender)}
    assert exported - {Recommender} == set(ALL_MODELS)


@pytest.mark.parametrize("cls", ALL_MODELS, ids=lambda c: c.__name__)
def test_declared_search_space_is_valid(cls):
    space = cls.__dict__["search_space"]  # declared on the class itself, not inherited
    dists = tune.check_space(space, cls)
    params = cls._param_names()
    assert set(dists) <= set(params)
    if cls is not MostPopular:
        assert dists, f"{cls.__name__} declares an empty search space"
    for d in dists.values():
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            assert len(d.choices) >= 1
        else:
            assert d.low < d.high and (not d.log or d.low > 0)
    if issubclass(cls, SASRec):  # every factors value must split into the default number of heads
        heads = cls().num_heads
        d = dists["factors"]
        assert all(f % heads == 0 for f in range(d.low, d.high + 1, d.step))


@pytest.mark.parametrize("cls", [c for c in ALL_MODELS if c is not MostPopular and not issubclass(c, SASRec)],
                         ids=lambda c: c.__name__)
def test_a_point_of_each_space_trains(cls, data):
    small = {"iterations": 2, "batch_size": 512, "device": "cpu", "num_threads": 1}  # 1 thread: deterministic
    fixed = {k: v for k, v in small.items() if k in cls._param_names() and k not in cls.search_space}
    space = {k: v for k, v in cls.search_space.items() if k != "factors"}
    if "factors" in cls.search_space:
        space["factors"] = ("int", 4, 8)
    if "iterations" in cls.search_space:
        space["iterations"] = ("int", 1, 3)
    if "neighbors" in space:
        space["neighbors"] = ("int", 5, 50)
    res = run(cls(**fixed), data, space=space, n_trials=1, start_from_model=False)  # a sampled point
    assert res.best_value >= 0


@pytest.mark.parametrize("cls", [SASRec, gSASRec, BERT4Rec], ids=lambda c: c.__name__)
def test_a_point_of_each_sequential_space_trains(cls, sequences):
    train, valid, _ = sequences
    res = tune.search(cls(iterations=1, batch_size=64, device="cpu"), train, valid, protocol="loo", n_trials=1,
                      start_from_model=False, show_progress=False, seed=1)
    assert set(res.best_params) == set(cls.search_space) and res.best_value >= 0
