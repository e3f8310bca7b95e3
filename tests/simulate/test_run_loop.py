"""run_loop: the log against a replay of the rules (eligibility, exact probabilities, Monte
Carlo of each round's policy), history figures against brute force, propensities reaching
training, warm starts, determinism, semi-synthetic worlds and bad input."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.datasets import make_world
from recfb.debias import make_semi_synthetic
from recfb.models import MF
from recfb.models.base import Recommender
from recfb.simulate import HISTORY_COLUMNS, LOG_COLUMNS, make_policy, plot_histories, run_loop
from recfb.utils.errors import DataError


class FixedScores(Recommender):
    """Scores are a fixed matrix; records what fit received."""

    def __init__(self, scores=None, propensity=None):
        self.scores = scores
        self.propensity = propensity

    __repr__ = object.__repr__

    def fit(self, user_items, show_progress=True, sample_weight=None):
        self.n_users_, self.n_items_ = self.scores.shape
        self.fit_X_ = user_items.copy()
        self.sample_weight_ = sample_weight
        return self

    def _score(self, userids, user_items):
        return self.scores[userids]


class _NoPropensity(Recommender):
    def fit(self, user_items, show_progress=True):
        return self


@pytest.fixture(scope="module")
def world():
    return make_world(n_users=40, n_items=30, rank=4, density=0.05, seed=3)


def _scores(world, seed=0):
    return np.random.default_rng(seed).normal(size=world.relevance_prob.shape).astype(np.float32) * 2


def _clicked_before(log, r):
    """Set of (user, item) clicked in the world log and rounds < r."""
    past = log[(log["round"] < r) & log["click"]]
    return set(zip(past["user"], past["item"]))


@pytest.mark.parametrize("policy, kw", [("softmax", {"temperature": 0.8}), ("epsilon", {"epsilon": 0.4})])
def test_every_rounds_logged_probabilities_match_replay_and_monte_carlo(world, policy, kw):
    scores = _scores(world)
    res = run_loop(world, lambda: FixedScores(scores), policy=policy, rounds=3, k=3, seed=1, show_progress=False, **kw)
    log = res.log
    rule = make_policy(policy, **kw)
    rng = np.random.default_rng(7)
    n_draws = 20_000
    for r in range(3):
        clicked = _clicked_before(log, r)
        rows = log[log["round"] == r]
        assert len(rows) == world.n_users * 3
        for u in (0, 5, 17):  # three users' lists, replayed by brute force and by Monte Carlo
            lst = rows[rows["user"] == u].sort_values("position")
            items, logged = lst["item"].to_numpy(), lst["policy_prob"].to_numpy()
            s = scores[u].astype(np.float64)
            s[[i for (v, i) in clicked if v == u]] = -np.inf
            assert np.all(np.isfinite(s[items])), "a clicked item was shown again"
            for slot, item in enumerate(items):
                left = [j for j in range(s.size) if s[j] > -np.inf and j not in items[:slot]]
                if policy == "softmax":
                    want = math.exp(s[item] / 0.8) / sum(math.exp(s[j] / 0.8) for j in left)
                else:
                    best = max(left, key=lambda j: (s[j], -j))
                    want = 0.6 * (item == best) + 0.4 / len(left)
                assert logged[slot] == pytest.approx(want, rel=1e-6)
            draws, _ = rule(np.tile(s, (n_draws, 1)), 3, rng)
            for slot in range(2):  # P(first slot + 1 items) = product of the logged probabilities
                p = float(np.prod(logged[:slot + 1]))
                freq = np.mean(np.all(draws[:, :slot + 1] == items[:slot + 1], axis=1))
                assert abs(freq - p) <= 4.5 * math.sqrt(p * (1 - p) / n_draws) + 2e-4, (r, u, slot)
        assert np.allclose(rows["propensity"], rows["policy_prob"] * rows["examination"])
        assert np.allclose(rows["examination"], 1.0 / rows["position"])


def test_history_matches_brute_force_from_the_log(world):
    scores = _scores(world, 1)
    res = run_loop(world, lambda: FixedScores(scores), policy="softmax", rounds=3, k=4, seed=2, show_progress=False)
    h, log = res.history, res.log
    assert list(h.columns) == list(HISTORY_COLUMNS) and list(log.columns) == list(LOG_COLUMNS)
    n_users, n_items = world.relevance_prob.shape
    top_items = None
    for r in range(3):
        rows = log[log["round"] == r]
        counts = [0] * n_items
        for i in rows["item"]:
            counts[i] += 1
        c = sorted(counts)
        want_gini = sum((2 * (j + 1) - n_items - 1) * c[j] for j in range(n_items)) / (n_items * sum(c))
        if top_items is None:
            top_items = sorted(range(n_items), key=lambda i: (-counts[i], i))[:math.ceil(0.01 * n_items)]
        dcg = sum(world.relevance_prob[u, i] / math.log2(p + 1)
                  for u, i, p in zip(rows["user"], rows["item"], rows["position"])) / n_users
        train = log[(log["round"] < r) & log["click"]]
        n_i = np.bincount(train["item"], minlength=n_items)
        novelty = np.mean([-math.log2(max(n_i[i], 1) / n_users) for i in rows["item"]])
        row = h.iloc[r]
        assert row["round"] == r
        assert row["exposure_gini"] == pytest.approx(want_gini)
        assert row["coverage"] == pytest.approx(sum(x > 0 for x in counts) / n_items)
        assert row["top1pct_share"] == pytest.approx(sum(counts[i] for i in top_items) / len(rows))
        assert row["true_dcg"] == pytest.approx(dcg)
        assert row["clicks"] == rows["click"].sum()
        assert row["novelty"] == pytest.approx(novelty)
        assert row["log_clicks"] == log[(log["round"] <= r) & log["click"]].shape[0]


def test_log_starts_with_the_world_clicks_and_never_repeats_a_click(world):
    res = run_loop(world, lambda: FixedScores(_scores(world)), policy="epsilon", rounds=4, k=5, seed=0,
                   show_progress=False)
    start = res.log[res.log["round"] == -1]
    X = world.clicks.matrix.tocoo()
    assert set(zip(start["user"], start["item"])) == set(zip(X.row, X.col))
    assert np.allclose(start["propensity"], world.propensity[start["user"], start["item"]])
    clicks = res.log[res.log["click"]]
    assert not clicks.duplicated(["user", "item"]).any()
    # the model of round r was fitted on exactly the clicks before round r
    fitted = res.model.fit_X_.tocoo()
    assert set(zip(fitted.row, fitted.col)) == _clicked_before(res.log, 3)


def test_clicks_follow_examination_times_relevance():
    w = make_world(n_users=200, n_items=50, rank=4, density=0.05, seed=0)
    exam = np.array([0.9, 0.6, 0.3])
    res = run_loop(w, lambda: FixedScores(np.zeros((200, 50), np.float32)), policy="softmax", rounds=6, k=3,
                   examination=exam, seed=0, show_progress=False)
    rows = res.log[res.log["round"] >= 0]
    for p in (1, 2, 3):
        at = rows[rows["position"] == p]
        expected = exam[p - 1] * w.relevance_prob[at["user"], at["item"]]
        sd = math.sqrt(np.sum(expected * (1 - expected)))
        assert abs(at["click"].sum() - expected.sum()) <= 4.5 * sd


def test_same_seed_same_run_other_seed_other_run(world):
    def run(seed):
        return run_loop(world, lambda: FixedScores(_scores(world)), policy="softmax", rounds=2, k=3, seed=seed,
                        users_per_round=25, show_progress=False)
    a, b, c = run(4), run(4), run(5)
    assert a.history.equals(b.history) and a.log.equals(b.log)
    assert not a.log.equals(c.log)
    assert (a.log[a.log["round"] == 0]["user"].nunique()) == 25


@pytest.mark.parametrize("weighting", ["ips", "snips"])
def test_ips_weights_are_the_inverse_logged_propensities(world, weighting):
    res = run_loop(world, lambda: FixedScores(_scores(world)), policy="softmax", rounds=3, k=3, seed=0,
                   weighting=weighting, clip=0.05, show_progress=False)
    m = res.model
    clicks = res.log[(res.log["round"] < 2) & res.log["click"]]
    prop = {(u, i): p for u, i, p in zip(clicks["user"], clicks["item"], clicks["propensity"])}
    X = m.fit_X_.tocoo()  # CSR order
    want = np.array([1 / max(prop[(u, i)], 0.05) for u, i in zip(X.row, X.col)])
    if weighting == "snips":
        want = want / want.mean()
    assert len(prop) == X.nnz
    assert np.allclose(m.sample_weight_, want)


def test_propensity_weighting_hands_the_logged_matrix_to_the_model(world):
    res = run_loop(world, lambda: FixedScores(_scores(world)), policy="softmax", rounds=2, k=3, seed=0,
                   weighting="propensity", show_progress=False)
    theta = res.model.propensity
    clicks = res.log[(res.log["round"] < 1) & res.log["click"]]
    assert np.allclose(theta[clicks["user"], clicks["item"]], clicks["propensity"], rtol=1e-6)
    other = np.ones(theta.shape, bool)
    other[clicks["user"], clicks["item"]] = False
    assert np.allclose(theta[other], world.propensity[other])
    # and the MNAR losses train on it
    fit = run_loop(world, lambda: MF(loss="relmf_dr", factors=4, iterations=2, device="cpu"), policy="softmax",
                   rounds=2, k=3, weighting="propensity", show_progress=False)
    assert fit.history["true_dcg"].notna().all()


def test_warm_retraining_starts_from_the_previous_round():
    w = make_world(n_users=30, n_items=20, rank=4, density=0.1, seed=1)

    def run(rounds, retrain):
        seeds = iter(range(100))  # a new initialisation every round, and (almost) no learning
        return run_loop(w, lambda: MF(loss="bpr", factors=4, iterations=1, learning_rate=1e-7, device="cpu",
                                      random_state=next(seeds)), rounds=rounds, k=3, retrain=retrain,
                        show_progress=False).model

    first = run(1, "fresh")  # round 0's model (random_state 0)
    warm, fresh = run(2, "warm"), run(2, "fresh")  # round 1's model (random_state 1)
    assert np.allclose(warm.item_factors, first.item_factors, atol=1e-5)
    assert np.allclose(warm.user_factors, first.user_factors, atol=1e-5)
    assert not np.allclose(fresh.item_factors, first.item_factors, atol=1e-3)
    assert "_build_scorer" not in vars(warm)  # the warm start leaves the model as it was
    with pytest.raises(TypeError, match="recfb.train"):
        run_loop(w, lambda: FixedScores(np.zeros((30, 20), np.float32)), rounds=2, retrain="warm", show_progress=False)


def test_semi_synthetic_world_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    R = sp.csr_matrix(np.where(rng.random((30, 25)) < 0.3, rng.integers(1, 6, (30, 25)), 0).astype(np.float32))
    semi = make_semi_synthetic(R, completed=rng.uniform(1, 5, (30, 25)), seed=0)
    res = run_loop(semi, lambda: FixedScores(_scores(semi)), policy="topk", rounds=3, k=4, show_progress=False)
    start = res.log[res.log["round"] == -1]
    assert len(start) == semi.train.nnz + semi.valid.nnz
    assert np.all(res.log.loc[res.log["round"] >= 0, "policy_prob"] == 1.0)
    path = tmp_path / "loop.png"
    res.plot(path)
    assert path.stat().st_size > 1000
    fig = plot_histories({"a": [res, res], "b": res.history}, tmp_path / "two.png", metrics=["true_dcg"])
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2


def test_callable_policy(world):
    def first_items(scores, k, rng):
        order = np.argsort(np.where(scores > -np.inf, np.arange(scores.shape[1]), np.inf), axis=1)[:, :k]
        return order, np.ones(order.shape)
    res = run_loop(world, lambda: FixedScores(_scores(world)), policy=first_items, rounds=1, k=2, show_progress=False)
    assert res.params["policy"] == "first_items"
    assert (res.log[res.log["round"] == 0]["item"] < 10).all()


def test_bad_input_is_named(world):
    make = lambda: FixedScores(_scores(world))  # noqa: E731
    with pytest.raises(ValueError, match="weighting == 'dr'"):
        run_loop(world, make, weighting="dr")
    with pytest.raises(ValueError, match="clip"):
        run_loop(world, make, weighting="naive", clip=0.1)
    with pytest.raises(ValueError, match="k == 31"):
        run_loop(world, make, k=31)
    with pytest.raises(ValueError, match="users_per_round == 41"):
        run_loop(world, make, users_per_round=41)
    with pytest.raises(ValueError, match="retrain"):
        run_loop(world, make, retrain="hot")
    with pytest.raises(TypeError, match="relevance_prob"):
        run_loop(object(), make)
    with pytest.raises(TypeError, match="ignore them"):
        run_loop(world, lambda: MF(factors=4, iterations=1, device="cpu"), weighting="propensity", rounds=1,
                 show_progress=False)
    with pytest.raises(TypeError, match="propensity parameter"):
        run_loop(world, lambda: FixedScores.__new__(_NoPropensity), weighting="propensity", rounds=1,
                 show_progress=False)
    with pytest.raises(DataError, match="twice"):
        run_loop(world, make, policy=lambda s, k, r: (np.repeat(np.argmax(s, 1)[:, None], k, 1), np.ones((s.shape[0], k))),
                 rounds=1, show_progress=False)


def test_a_raw_implicit_model_is_scored_from_its_factors(world):
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, "blas"):  # implicit's ALS warns about a multi-threaded BLAS otherwise
        res = run_loop(world, lambda: AlternatingLeastSquares(factors=4, iterations=2, random_state=0),
                       policy="topk", rounds=2, k=3, show_progress=False)
    m = res.model
    rows = res.log[res.log["round"] == 1]
    X = m.user_factors @ m.item_factors.T
    clicked = _clicked_before(res.log, 1)
    for u in (0, 7):
        s = X[u].astype(np.float64)
        s[[i for (v, i) in clicked if v == u]] = -np.inf
        want = np.argsort(-s, kind="stable")[:3]
        assert rows[rows["user"] == u].sort_values("position")["item"].tolist() == want.tolist()
