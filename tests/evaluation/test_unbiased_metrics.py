"""MNAR evaluation: MAR-test metrics (full and Saito protocols) against a loop reference,
popularity buckets, the IPS metric's Monte-Carlo correctness, Coat, and bad input."""
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.evaluation import (
    ips_ranking_metrics,
    mar_ranking_metrics,
    metrics_by_popularity,
    popularity_buckets,
    true_relevance_metrics,
)
from recfb.models.base import Recommender
from recfb.utils.errors import DataError


class FixedScoresMNAR(Recommender):
    """A model whose scores are a fixed users x items matrix."""

    def __init__(self, scores=None):
        self.scores = scores

    __repr__ = object.__repr__

    def fit(self, user_items, show_progress=False):
        self.n_users_, self.n_items_ = self.scores.shape
        return self

    def _score(self, userids, user_items):
        return self.scores[userids]


def _data(seed=0, n_users=30, n_items=25):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    shown = (rng.random((n_users, n_items)) < 0.3) & (train.toarray() == 0)
    test_dense = np.where(shown, rng.integers(1, 6, (n_users, n_items)), 0)
    return FixedScoresMNAR(scores).fit(train), train, sp.csr_matrix(test_dense.astype(np.float32))


def _reference(scores, train, test, k, protocol, threshold, relevant_items=None):
    """Loop-by-user reference of dcg/recall/map (independent of the vectorised code)."""
    train, test = train.toarray(), test.toarray()
    out = {"dcg": [], "recall": [], "map": []}
    for u in range(scores.shape[0]):
        rel = test[u] >= threshold
        rel &= test[u] > 0
        if relevant_items is not None:
            rel &= relevant_items
        if rel.sum() == 0:
            continue
        cand = np.flatnonzero(train[u] == 0) if protocol == "full" else np.flatnonzero(test[u] > 0)
        ranked = cand[np.argsort(-scores[u, cand], kind="stable")][:k]
        g = rel[ranked].astype(float)
        out["dcg"].append(sum(g[r] / np.log2(r + 2) for r in range(len(g))))
        out["recall"].append(g.sum() / rel.sum())
        out["map"].append(sum(g[r] * g[:r + 1].sum() / (r + 1) for r in range(len(g))) / min(k, rel.sum()))
    return {m: float(np.mean(v)) for m, v in out.items()}, len(out["dcg"])


@pytest.mark.parametrize("protocol", ["full", "saito"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_mar_metrics_match_a_loop_reference(protocol, k):
    model, train, test = _data()
    got = mar_ranking_metrics(model, train, test, k=k, protocol=protocol, threshold=4, batch_size=7)
    ref, n = _reference(model.scores, train, test, k, protocol, 4)
    assert got.n_users == n
    for m in ("dcg", "recall", "map"):
        assert got[f"{m}@{k}"] == pytest.approx(ref[m], abs=1e-9), m


def test_known_answer_saito_protocol():
    scores = np.array([[0.9, 0.1, 0.5, 0.3]], np.float32)
    test = sp.csr_matrix(np.array([[5, 2, 1, 4]], np.float32))
    model = FixedScoresMNAR(scores).fit(test)
    res = mar_ranking_metrics(model, sp.csr_matrix((1, 4), dtype=np.float32), test, k=2, protocol="saito")
    # ranking 0 (rel), 2, 3 (rel), 1 -> top-2 gains [1, 0]
    assert res["dcg@2"] == pytest.approx(1.0)
    assert res["recall@2"] == pytest.approx(0.5)
    assert res["map@2"] == pytest.approx(0.5)


def test_popularity_buckets_and_bucketed_metrics():
    model, train, test = _data(seed=1)
    buckets = popularity_buckets(train, rare_fraction=0.4)
    counts = np.bincount(train.indices, minlength=train.shape[1])
    assert buckets["rare"].sum() == 10 and not (buckets["rare"] & buckets["popular"]).any()
    assert counts[buckets["rare"]].max() <= counts[buckets["popular"]].min()
    res = metrics_by_popularity(model, train, test, k=5, protocol="full", threshold=4, rare_fraction=0.4)
    ref, _ = _reference(model.scores, train, test, 5, "full", 4, relevant_items=buckets["rare"])
    assert res["rare"]["dcg@5"] == pytest.approx(ref["dcg"])
    assert set(res) == {"all", "rare", "popular"}


def test_ips_dcg_is_within_two_standard_errors_of_the_truth_and_naive_is_not():
    rng = np.random.default_rng(3)
    n_users, n_items = 300, 60
    relevance = (rng.random((n_users, n_items)) < 0.25).astype(float)
    theta_i = 0.02 + 0.98 * (np.arange(1, n_items + 1) / n_items) ** 2  # the model's favourites are rarely shown
    scores = (relevance + rng.normal(0, 0.8, relevance.shape)).astype(np.float32)
    model = FixedScoresMNAR(scores).fit(sp.csr_matrix(relevance))
    empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    truth = true_relevance_metrics(model, empty, relevance, k=5)["dcg@5"]
    # independent truth: explicit top-5 per user
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    assert truth == pytest.approx(np.mean((relevance[np.arange(n_users)[:, None], top] / np.log2(np.arange(2, 7))).sum(1)))
    ips, naive = [], []
    for _ in range(20):
        log = sp.csr_matrix(relevance * (rng.random(relevance.shape) < theta_i))
        ips.append(ips_ranking_metrics(model, empty, log, theta_i, k=5)["ips_dcg@5"])
        naive.append(ips_ranking_metrics(model, empty, log, np.ones(n_items), k=5)["ips_dcg@5"])
    se = np.std(ips, ddof=1) / np.sqrt(20)
    assert abs(np.mean(ips) - truth) < 2 * se
    assert abs(np.mean(naive) - truth) > 2 * se + abs(np.mean(ips) - truth)
    assert abs(np.mean(naive) - truth) > 10 * np.std(naive, ddof=1) / np.sqrt(20)


def test_ips_cap_and_snips():
    scores = np.array([[3.0, 2.0, 1.0, 0.0]], np.float32)
    model = FixedScoresMNAR(scores).fit(sp.csr_matrix(scores))
    empty = sp.csr_matrix((1, 4), dtype=np.float32)
    log = sp.csr_matrix(np.array([[1, 0, 1, 1]], np.float32))
    theta = np.array([0.05, 1.0, 0.5, 0.5])
    res = ips_ranking_metrics(model, empty, log, theta, k=2, ip_cap=10)
    assert res["ips_hits@2"] == pytest.approx(10.0)  # 1/0.05 = 20 capped at 10; item 2 at rank 3
    assert res["ips_dcg@2"] == pytest.approx(10.0)
    assert res["snips_recall@2"] == pytest.approx(10.0 / 14.0)
    uncapped = ips_ranking_metrics(model, empty, log, theta, k=3)
    assert uncapped["ips_dcg@3"] == pytest.approx(20 + 2 / np.log2(4))


def test_bad_input_raises_naming_the_value():
    model, train, test = _data()
    with pytest.raises(ValueError, match="protocol == 'sampled'"):
        mar_ranking_metrics(model, train, test, protocol="sampled")
    with pytest.raises(ValueError, match="threshold == nan"):
        mar_ranking_metrics(model, train, test, threshold=float("nan"))
    with pytest.raises(DataError, match="relevant_items must be a bool array of shape"):
        mar_ranking_metrics(model, train, test, relevant_items=np.ones(3, bool))
    with pytest.raises(ValueError, match="ip_cap == 0.5"):
        ips_ranking_metrics(model, train, test, np.full(25, 0.5), ip_cap=0.5)
    with pytest.raises(DataError, match="propensity == 0.0"):
        ips_ranking_metrics(model, train, test, np.zeros(25))
    with pytest.raises(DataError, match="propensity == 1.5"):
        ips_ranking_metrics(model, train, test, np.full(25, 1.5))
    with pytest.raises(DataError, match="propensity has shape"):
        ips_ranking_metrics(model, train, test, np.full(3, 0.5))
    with pytest.raises(ValueError, match="rare_fraction == 1"):
        popularity_buckets(train, rare_fraction=1)
    with pytest.raises(DataError, match="relevance has shape"):
        true_relevance_metrics(model, train, np.ones((2, 2)))


def _coat_dir():
    d = Path(os.environ.get("RECFB_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
    return d if (d / "coat" / "train.ascii").is_file() else None


@pytest.mark.skipif(_coat_dir() is None, reason="Coat not found under $RECFB_DATA_DIR or ../shared/datasets")
def test_coat_mar_test_both_protocols():
    from recfb.datasets import load
    from recfb.models import MostPopular
    coat = load("coat", data_dir=_coat_dir(), download=False)
    train = coat.train.matrix.copy()
    train.data = (train.data >= 4).astype(np.float32)
    train.eliminate_zeros()
    model = MostPopular().fit(train)
    full = mar_ranking_metrics(model, train, coat.test.matrix, k=5, protocol="full")
    saito = mar_ranking_metrics(model, train, coat.test.matrix, k=5, protocol="saito")
    assert full.n_users == saito.n_users > 200
    assert 0 < full["dcg@5"] < saito["dcg@5"] < 3  # 16 candidates are easier than 300
