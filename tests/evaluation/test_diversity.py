"""Beyond-accuracy metrics against loop-by-user brute-force references, known answers,
ranking_metrics(extra=...) and bad input."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
from test_ranking_metrics import FixedScores  # the fixed-score model of the ranking tests

from recfb.evaluation import diversity_metrics, gini, ranking_metrics
from recfb.utils.errors import DataError


def _data(seed=0, n_users=40, n_items=30, k=6):
    rng = np.random.default_rng(seed)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.15).astype(np.float32))
    ids = np.stack([rng.choice(n_items, k, replace=False) for _ in range(n_users)])
    ids[rng.random((n_users, k)) < 0.1] = -1  # a few empty slots
    return train, ids


def _reference(ids, train, k, features=None, labels=None, weights=None):
    """Plain-Python loops over users, pairs and categories (independent of the vectorised code)."""
    dense = train.toarray() != 0
    n_users, n_items = dense.shape
    n_i = dense.sum(0)
    slots = [(u, i) for u in range(ids.shape[0]) for i in ids[u, :k] if i >= 0]
    out = {"novelty": sum(-math.log2(max(n_i[i], 1) / n_users) for _, i in slots) / len(slots),
           "avg_popularity": sum(n_i[i] for _, i in slots) / len(slots)}
    counts = [0] * n_items
    for _, i in slots:
        counts[i] += 1
    c = sorted(counts)
    out["gini"] = sum((2 * (j + 1) - n_items - 1) * c[j] for j in range(n_items)) / (n_items * sum(c))
    out["coverage"] = sum(x > 0 for x in counts) / n_items
    if features is not None:
        per = []
        for u in range(ids.shape[0]):
            items = [i for i in ids[u, :k] if i >= 0]
            d = []
            for a in range(len(items)):
                for b in range(a + 1, len(items)):
                    x, y = features[items[a]], features[items[b]]
                    d.append(1 - float(x @ y) / (np.linalg.norm(x) * np.linalg.norm(y)))
            if d:
                per.append(sum(d) / len(d))
        out["ild"] = sum(per) / len(per)
    if labels is not None or weights is not None:
        W = weights if weights is not None else np.eye(labels.max() + 1)[labels]
        W = W / W.sum(1, keepdims=True)
        per = []
        for u in range(ids.shape[0]):
            hist = np.flatnonzero(dense[u])
            items = [i for i in ids[u, :k] if i >= 0]
            if not hist.size or not items:
                continue
            p = W[hist].sum(0) / len(hist)
            q = W[items].sum(0) / len(items)
            per.append(sum(p[g] * math.log(p[g] / (0.99 * q[g] + 0.01 * p[g])) for g in range(W.shape[1]) if p[g] > 0))
        out["miscalibration"] = sum(per) / len(per)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed):
    train, ids = _data(seed)
    rng = np.random.default_rng(seed + 10)
    features = rng.normal(size=(train.shape[1], 5))
    labels = rng.integers(0, 4, train.shape[1])
    weights = rng.random((train.shape[1], 3)) * (rng.random((train.shape[1], 3)) < 0.7) + np.eye(3)[labels % 3]
    for k in (3, 6):
        got = diversity_metrics(ids, train, k=k, item_features=features, item_categories=labels)
        want = _reference(ids, train, k, features=features, labels=labels)
        for name, value in want.items():
            assert got[f"{name}@{k}"] == pytest.approx(value, rel=1e-9, abs=1e-12), name
        multi = diversity_metrics(ids, train, k=k, item_categories=weights)
        assert multi[f"miscalibration@{k}"] == pytest.approx(_reference(ids, train, k, weights=weights)["miscalibration"])


def test_several_cutoffs_in_one_call():
    train, ids = _data(3)
    both = diversity_metrics(ids, train, k=(3, 6))
    for k in (3, 6):
        one = diversity_metrics(ids, train, k=k)
        assert {n: both[n] for n in one} == one


def test_gini_known_answers():
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 7]) == pytest.approx(1 - 1 / 4)
    assert gini([0, 0, 0]) == 0.0
    assert gini([1, 2, 3]) == pytest.approx((-2 * 1 + 0 * 2 + 2 * 3) / (3 * 6))
    with pytest.raises(DataError, match=">= 0"):
        gini([1, -1])


def test_ild_with_zero_vector_and_short_lists():
    # items 0, 1 orthogonal, 2 = item 0, 3 all-zero; a list of one item has no pair (skipped)
    features = np.array([[1.0, 0], [0, 1.0], [2.0, 0], [0, 0]])
    train = sp.csr_matrix(np.ones((3, 4), np.float32))
    ids = np.array([[0, 1, 2], [0, 3, -1], [1, -1, -1]])
    got = diversity_metrics(ids, train, k=3, item_features=features)["ild@3"]
    assert got == pytest.approx(((1 + 0 + 1) / 3 + 1.0) / 2)


def test_unpopular_items_are_novel_and_one_list():
    train = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0]], np.float32))
    got = diversity_metrics(np.array([0, 2]), train, k=2)  # one 1-D list
    assert got["novelty@2"] == pytest.approx((0.0 + math.log2(4)) / 2)  # n_2 = 0 counts as 1
    assert got["avg_popularity@2"] == 2.0
    assert got["coverage@2"] == pytest.approx(2 / 3)


def test_perfectly_calibrated_list_has_zero_miscalibration():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0]], np.float32))
    labels = np.array([0, 1, 0, 1])
    assert diversity_metrics(np.array([[2, 3]]), train, k=2, item_categories=labels)["miscalibration@2"] == \
        pytest.approx(0.0, abs=1e-12)
    one_sided = diversity_metrics(np.array([[2, 0]]), train, k=2, item_categories=labels)["miscalibration@2"]
    assert one_sided == pytest.approx(0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005))


def test_ranking_metrics_extra_matches_diversity_metrics():
    rng = np.random.default_rng(5)
    n_users, n_items = 30, 25
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    test = sp.csr_matrix(((rng.random((n_users, n_items)) < 0.2) & (train.toarray() == 0)).astype(np.float32))
    model = FixedScores(rng.normal(size=(n_users, n_items)).astype(np.float32)).fit(train)
    features = rng.normal(size=(n_items, 4))
    labels = rng.integers(0, 3, n_items)
    res = ranking_metrics(model, train, test, k=(5, 10), extra=("novelty", "gini", "ild", "miscalibration"),
                          item_features=features, item_categories=labels, per_user=True)
    users = res.per_user["users"]
    ids, _ = model.recommend(users, train[users], N=10)
    want = diversity_metrics(ids, train, k=(5, 10), item_features=features, item_categories=labels, users=users)
    for k in (5, 10):
        for m in ("novelty", "gini", "ild", "miscalibration"):
            assert res[f"{m}@{k}"] == pytest.approx(want[f"{m}@{k}"])
        assert res[f"coverage@{k}"] == pytest.approx(want[f"coverage@{k}"])
    assert "novelty@5" not in ranking_metrics(model, train, test, k=5)


def test_bad_input_is_named():
    train, ids = _data(0)
    with pytest.raises(DataError, match="item id 30"):
        diversity_metrics(np.array([[0, 30]]), train)
    with pytest.raises(DataError, match="integer"):
        diversity_metrics(np.array([[0.5, 1.0]]), train)
    with pytest.raises(DataError, match="one row per item"):
        diversity_metrics(ids, train, item_features=np.ones((3, 2)))
    with pytest.raises(DataError, match="labels"):
        diversity_metrics(ids, train, item_categories=np.ones(3, int))
    with pytest.raises(DataError, match="users="):
        diversity_metrics(np.zeros((50, 2), int), train, item_categories=np.zeros(30, int))
    model = FixedScores(np.zeros(train.shape, np.float32)).fit(train)
    with pytest.raises(ValueError, match="unknown"):
        ranking_metrics(model, train, train, k=5, extra=("serendipity",))
    with pytest.raises(ValueError, match="item_features"):
        ranking_metrics(model, train, train, k=5, extra=("ild",))


def test_cli_bench_reports_extra_metrics(capsys):
    from recfb.cli.main import main
    assert main(["--quiet", "bench", "--dataset", "synthetic", "--models", "popular", "--k", "10",
                 "--extra", "novelty", "gini"]) == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert "novelty@10" in header and "gini@10" in header
