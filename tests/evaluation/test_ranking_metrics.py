"""recfb.evaluation.ranking_metrics against a plain brute-force reference and implicit."""
import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.evaluation import MetricResults, ranking_metrics
from recfb.models.base import Recommender
from recfb.utils.errors import DataError

N_USERS, N_ITEMS = 70, 40
METRICS = ("precision", "recall", "calibrated_recall", "ndcg", "map", "mrr", "hit_rate")


class FixedScores(Recommender):
    """A model whose scores are a fixed users x items matrix."""

    def __init__(self, scores=None):
        self.scores = scores

    __repr__ = object.__repr__  # the parameter is an array

    def fit(self, user_items, show_progress=False):
        self.n_users_, self.n_items_ = self.scores.shape
        return self

    def _score(self, userids, user_items):
        return self.scores[userids]


def make_data(seed=0, short_user=True):
    """Random train/test with: users without test items, test items also in train, and (with
    ``short_user``) a user 0 with fewer eligible items than the largest k."""
    rng = np.random.default_rng(seed)
    train = (rng.random((N_USERS, N_ITEMS)) < 0.15).astype(np.float32)
    test = (rng.random((N_USERS, N_ITEMS)) < 0.12).astype(np.float32)
    test[rng.random(N_USERS) < 0.1] = 0  # ~7 users without test items
    test[1] = 0
    if short_user:
        train[0] = 1
        train[0, [3, 7, 11]] = 0  # user 0 has 3 eligible items
        test[0] = 0
        test[0, [3, 11, 20]] = 1  # 20 is also a train item: in |T|, never recommendable
    # ties-free scores: a permutation per user
    scores = np.stack([rng.permutation(N_ITEMS) for _ in range(N_USERS)]).astype(np.float32)
    return sp.csr_matrix(train), sp.csr_matrix(test), scores


def brute_force(scores, train, test, ks, filter_liked=True, users=None):
    """Per-user metrics and coverage by the definitions, one user and one item at a time."""
    train_d, test_d = train.toarray(), test.toarray()
    per = {f"{m}@{k}": [] for k in ks for m in METRICS}
    covered = {k: set() for k in ks}
    evaluated, skipped = [], 0
    for u in range(train.shape[0]) if users is None else users:
        relevant = {i for i in range(N_ITEMS) if test_d[u, i] != 0}
        if not relevant:
            skipped += 1
            continue
        evaluated.append(u)
        candidates = [i for i in range(N_ITEMS) if not (filter_liked and train_d[u, i] != 0)]
        ranking = sorted(candidates, key=lambda i: -scores[u, i])
        for k in ks:
            top = ranking[:k]
            covered[k].update(top)
            rel = [1 if i in relevant else 0 for i in top]
            hits = sum(rel)
            dcg = sum(r / math.log2(pos + 2) for pos, r in enumerate(rel))
            idcg = sum(1 / math.log2(pos + 2) for pos in range(min(k, len(relevant))))
            ap, seen = 0.0, 0
            for pos, r in enumerate(rel):
                if r:
                    seen += 1
                    ap += seen / (pos + 1)
            first = [pos for pos, r in enumerate(rel) if r]
            per[f"precision@{k}"].append(hits / k)
            per[f"recall@{k}"].append(hits / len(relevant))
            per[f"calibrated_recall@{k}"].append(hits / min(k, len(relevant)))
            per[f"ndcg@{k}"].append(dcg / idcg)
            per[f"map@{k}"].append(ap / min(k, len(relevant)))
            per[f"mrr@{k}"].append(1 / (first[0] + 1) if first else 0.0)
            per[f"hit_rate@{k}"].append(float(hits > 0))
    means = {name: float(np.mean(v)) for name, v in per.items()}
    for k in ks:
        means[f"coverage@{k}"] = len(covered[k]) / N_ITEMS
    return means, per, evaluated, skipped


@pytest.fixture(scope="module")
def data():
    train, test, scores = make_data()
    return train, test, FixedScores(scores).fit(train)


@pytest.mark.parametrize("ks", [(1,), (5, 10), (3, 20, 40), (50,)])
def test_matches_brute_force(data, ks):
    train, test, model = data
    expected, per, evaluated, skipped = brute_force(model.scores, train, test, ks)
    got = ranking_metrics(model, train, test, k=ks, per_user=True)
    assert isinstance(got, MetricResults)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert got.n_users == len(evaluated) and got.n_skipped == skipped > 0
    np.testing.assert_array_equal(got.per_user["users"], evaluated)
    for name, values in per.items():
        np.testing.assert_allclose(got.per_user[name], values, atol=1e-12, err_msg=name)


def test_batch_size_and_int_k_do_not_change_results(data):
    train, test, model = data
    a = ranking_metrics(model, train, test, k=10)
    b = ranking_metrics(model, train, test, k=[10], batch_size=7)
    assert a == b and list(a) == [f"{m}@10" for m in METRICS] + ["coverage@10"]
    assert a.per_user is None


def test_without_filtering_train_items_can_hit(data):
    train, test, model = data
    expected, *_ = brute_force(model.scores, train, test, (5, 10), filter_liked=False)
    got = ranking_metrics(model, train, test, k=(5, 10), filter_already_liked_items=False)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_users_subset_skips_and_counts_users_without_test_items(data):
    train, test, model = data
    users = [0, 1, 2, 3, 5, 8, 13, 1]  # user 1 has no test item; duplicates count once
    expected, _, evaluated, skipped = brute_force(model.scores, train, test, (10,), users=sorted(set(users)))
    got = ranking_metrics(model, train, test, k=10, users=np.array(users), per_user=True)
    assert got.n_users == len(evaluated) and got.n_skipped == skipped >= 1
    np.testing.assert_array_equal(got.per_user["users"], evaluated)
    assert got["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
    assert got["coverage@10"] == pytest.approx(expected["coverage@10"])


def test_user_with_few_eligible_items_gets_misses_not_hits(data):
    """User 0 has 3 eligible items, 2 of them test items, and a third test item in train."""
    train, test, model = data
    got = ranking_metrics(model, train, test, k=10, users=[0], per_user=True)
    assert got["recall@10"] == pytest.approx(2 / 3)
    assert got["precision@10"] == pytest.approx(2 / 10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # implicit's OpenBLAS threads advice
def test_ndcg_and_map_match_implicit_on_als():
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k

    train, test, _ = make_data(seed=1, short_user=False)  # implicit misreads short rows
    model = AlternatingLeastSquares(factors=16, iterations=3, random_state=0)
    model.fit(train, show_progress=False)
    for k in (1, 5, 10):
        theirs = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
        ours = ranking_metrics(model, train, test, k=k)
        assert ours[f"ndcg@{k}"] == pytest.approx(theirs["ndcg"], rel=1e-9)
        assert ours[f"map@{k}"] == pytest.approx(theirs["map"], rel=1e-9)
    # and every metric against the brute force on the ALS scores
    scores = model.user_factors @ model.item_factors.T
    expected, *_ = brute_force(scores, train, test, (5, 10))
    ours = ranking_metrics(model, train, test, k=(5, 10))
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name


def test_implicit_filtered_positions_are_not_hits():
    """implicit fills a short row with filtered items scored -FLT_MAX; those are not hits."""
    from implicit.cpu.als import AlternatingLeastSquares

    train, test, _ = make_data(seed=2)
    test = test.toarray()
    test[0] = 1  # every item a test item of user 0, so implicit's filler ids are all test items
    test = sp.csr_matrix(test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = AlternatingLeastSquares(factors=8, iterations=2, random_state=0)
    model.fit(train, show_progress=False)
    _, scores = model.recommend(np.array([0]), train[[0]], N=10)
    assert (scores[0, 3:] <= -np.finfo(np.float32).max).all()  # implicit's filler, as said above
    expected, *_ = brute_force(model.user_factors @ model.item_factors.T, train, test, (10,), users=[0])
    got = ranking_metrics(model, train, test, k=10, users=[0])
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_implicit_metric_runs_on_recfb_model(data):
    from implicit.evaluation import ranking_metrics_at_k

    train, test, scores = make_data(seed=3, short_user=False)  # implicit misreads short rows
    model = FixedScores(scores).fit(train)
    theirs = ranking_metrics_at_k(model, train, test, K=10, show_progress=False)
    ours = ranking_metrics(model, train, test, k=10)
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg"], rel=1e-9)
    assert ours["map@10"] == pytest.approx(theirs["map"], rel=1e-9)


@pytest.mark.parametrize("k", [0, -3, [10, 0], (5, -1)])
def test_k_must_be_positive(data, k):
    train, test, model = data
    with pytest.raises(ValueError, match="k =="):
        ranking_metrics(model, train, test, k=k)


@pytest.mark.parametrize("k", [2.5, "10", True, [10, None]])
def test_k_must_be_int(data, k):
    train, test, model = data
    with pytest.raises(TypeError, match="k must be an int"):
        ranking_metrics(model, train, test, k=k)


def test_input_validation(data):
    train, test, model = data
    with pytest.raises(ValueError, match="k must be"):
        ranking_metrics(model, train, test, k=[])
    with pytest.raises(DataError, match="same shape"):
        ranking_metrics(model, train, test[:, :-1])
    bad = test.copy()
    bad.data[0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        ranking_metrics(model, train, bad)
    with pytest.raises(TypeError, match="scipy.sparse"):
        ranking_metrics(model, train.toarray(), test)
    with pytest.raises(DataError, match="no user to evaluate"):
        ranking_metrics(model, train, sp.csr_matrix(test.shape, dtype=np.float32))
    with pytest.raises(TypeError, match="recommend"):
        ranking_metrics(object(), train, test)
    with pytest.raises(ValueError, match="batch_size"):
        ranking_metrics(model, train, test, batch_size=0)


def test_coo_input_is_converted_with_a_warning(data):
    train, test, model = data
    with pytest.warns(UserWarning, match="converted from COO to CSR"):
        got = ranking_metrics(model, train, test.tocoo(), k=10)
    assert got == ranking_metrics(model, train, test, k=10)


def test_duplicate_test_entries_count_once(data):
    train, test, model = data
    doubled = sp.csr_matrix((np.repeat(test.data, 2), np.repeat(test.indices, 2), 2 * test.indptr),
                            shape=test.shape)
    assert doubled.nnz == 2 * test.nnz
    assert ranking_metrics(model, train, doubled, k=10) == ranking_metrics(model, train, test, k=10)


def test_show_progress(data, capsys):
    train, test, model = data
    ranking_metrics(model, train, test, k=10, show_progress=True)
    assert "ranking metrics" in capsys.readouterr().err
