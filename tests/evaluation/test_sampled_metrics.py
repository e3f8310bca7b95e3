"""Sampled-negatives protocol: brute-force reference, sampler properties, validation."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from recfb.evaluation import sample_negatives, sampled_ranking_metrics
from recfb.models.base import Recommender
from recfb.utils.errors import DataError

N_USERS, N_ITEMS = 60, 150


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


def make_data(seed=0, ties=False):
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1)
    train = rng.random((N_USERS, N_ITEMS)) < 0.6 * popularity / popularity.mean() * 0.1
    test = (rng.random((N_USERS, N_ITEMS)) < 0.05) & ~train
    test[:5] = False  # users without test items
    test[5, :3] = train[5, :3] = True  # test items that are also train items
    if ties:  # few distinct values: many ties between positives and negatives
        scores = rng.integers(0, 4, (N_USERS, N_ITEMS)).astype(np.float32)
    else:
        scores = rng.standard_normal((N_USERS, N_ITEMS)).astype(np.float32)
    return sp.csr_matrix(train, dtype=np.float32), sp.csr_matrix(test, dtype=np.float32), scores


def brute_force(scores, test, negatives, users, ks):
    """Mean over users of the mean over their test items; ties averaged over the positive's
    possible ranks g+1 .. g+t+1."""
    test_d = test.toarray()
    per_user = {name: [] for name in [f"{m}@{k}" for k in ks for m in ("hit_rate", "ndcg", "mrr")] + ["mrr"]}
    for row, u in enumerate(users):
        negs = [j for j in negatives[row] if j >= 0]
        pair_values = {name: [] for name in per_user}
        for i in range(test.shape[1]):
            if test_d[u, i] == 0:
                continue
            greater = sum(1 for j in negs if scores[u, j] > scores[u, i])
            tied = sum(1 for j in negs if scores[u, j] == scores[u, i])
            possible = range(greater + 1, greater + tied + 2)
            pair_values["mrr"].append(np.mean([1 / r for r in possible]))
            for k in ks:
                pair_values[f"hit_rate@{k}"].append(np.mean([r <= k for r in possible]))
                pair_values[f"ndcg@{k}"].append(np.mean([1 / math.log2(r + 1) if r <= k else 0 for r in possible]))
                pair_values[f"mrr@{k}"].append(np.mean([1 / r if r <= k else 0 for r in possible]))
        for name, v in pair_values.items():
            per_user[name].append(np.mean(v))
    return {name: float(np.mean(v)) for name, v in per_user.items()}, per_user


def eval_users(test):
    return np.flatnonzero(np.diff(test.indptr))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_matches_brute_force(sampler, ties):
    train, test, scores = make_data(seed=1, ties=ties)
    model = FixedScores(scores).fit(train)
    users = eval_users(test)
    ks = (1, 5, 10)
    negatives = sample_negatives(train, test, users=users, n_negatives=30, sampler=sampler, seed=4)
    expected, per = brute_force(scores, test, negatives, users, ks)
    got = sampled_ranking_metrics(model, train, test, k=ks, negatives=negatives, per_user=True)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
        np.testing.assert_allclose(got.per_user[name], per[name], atol=1e-12, err_msg=name)
    assert got.n_users == users.size and got.n_skipped == N_USERS - users.size >= 5
    assert got.n_pairs == test.nnz
    # sampling inside gives the same negatives for the same seed
    again = sampled_ranking_metrics(model, train, test, k=ks, n_negatives=30, sampler=sampler, seed=4)
    assert again == got


def test_ties_are_neither_optimistic_nor_pessimistic():
    """A constant model ranks the positive in the middle of its 1 + n negatives, on average."""
    train, test, _ = make_data(seed=2)
    model = FixedScores(np.zeros((N_USERS, N_ITEMS), np.float32)).fit(train)
    got = sampled_ranking_metrics(model, train, test, n_negatives=9, k=(5, 10))
    assert got["hit_rate@5"] == pytest.approx(0.5)
    assert got["hit_rate@10"] == pytest.approx(1.0)
    assert got["mrr"] == pytest.approx(np.mean(1 / np.arange(1, 11)))


def test_users_subset_batches_and_seed_reproducibility():
    train, test, scores = make_data(seed=3)
    model = FixedScores(scores).fit(train)
    a = sampled_ranking_metrics(model, train, test, users=[9, 5, 0, 1, 30], seed=7)
    b = sampled_ranking_metrics(model, train, test, users=[0, 1, 5, 9, 30], seed=7, batch_size=2)
    assert a.n_skipped == 2 and a.n_users == 3
    assert a == b  # the key stream does not depend on the batching
    c = sampled_ranking_metrics(model, train, test, users=[0, 1, 5, 9, 30], seed=8)
    assert c != a


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_negatives_exclude_interactions_and_have_no_duplicates(sampler):
    train, test, _ = make_data(seed=5)
    negatives = sample_negatives(train, test, n_negatives=40, sampler=sampler, seed=0, batch_size=7)
    assert negatives.shape == (N_USERS, 40) and negatives.dtype == np.int64
    seen = (train + test).toarray() > 0
    counts = np.bincount(train.indices, minlength=N_ITEMS)
    for u in range(N_USERS):
        row = negatives[u][negatives[u] >= 0]
        assert len(set(row)) == row.size
        assert not seen[u, row].any()
        if sampler == "popularity":
            assert (counts[row] > 0).all()  # never an item without train interactions
        eligible = (~seen[u] & ((counts > 0) if sampler == "popularity" else True)).sum()
        assert row.size == min(40, eligible)


def test_popularity_sampler_draws_proportionally_to_train_counts():
    """One negative per user: P(item j) = w_j / sum of eligible w, exactly; chi-square check."""
    rng = np.random.default_rng(0)
    n_users, n_items = 4000, 25
    w_true = 1.0 / np.arange(1, n_items + 1) ** 1.2
    w_true[-1] = 0  # an item nobody has in train
    train_items = rng.choice(n_items, size=n_users, p=w_true / w_true.sum())
    test_items = (train_items + 1 + rng.integers(0, n_items - 1, n_users)) % n_items
    rows = np.arange(n_users)
    train = sp.csr_matrix((np.ones(n_users, np.float32), (rows, train_items)), shape=(n_users, n_items))
    test = sp.csr_matrix((np.ones(n_users, np.float32), (rows, test_items)), shape=(n_users, n_items))
    negatives = sample_negatives(train, test, n_negatives=1, sampler="popularity", seed=123)[:, 0]
    w = np.bincount(train_items, minlength=n_items).astype(float)
    eligible = np.ones((n_users, n_items), bool)
    eligible[rows, train_items] = eligible[rows, test_items] = False
    p = eligible * w
    p /= p.sum(axis=1, keepdims=True)
    expected = p.sum(axis=0)
    observed = np.bincount(negatives, minlength=n_items)
    assert observed[expected == 0].sum() == 0
    keep = expected > 0
    chi2 = (((observed - expected) ** 2)[keep] / expected[keep]).sum()
    assert chi2 < stats.chi2.ppf(0.999, keep.sum() - 1)


def test_popularity_sampler_is_successive_sampling_without_replacement():
    """Two of four items: P(j in draw) = sum over orders of w_a/W * w_b/(W - w_a)."""
    w = np.array([8.0, 4.0, 2.0, 1.0])
    n_empty = 20000
    # a few users whose train rows make the counts w; many users with empty rows to sample for
    rows = np.repeat(np.arange(8), 1)
    train = sp.lil_matrix((8 + n_empty, 4), dtype=np.float32)
    for j, count in enumerate(w.astype(int)):
        train[rows[:count], j] = 1
    train = train.tocsr()
    test = sp.csr_matrix(train.shape, dtype=np.float32)
    negatives = sample_negatives(train, test, users=np.arange(8, 8 + n_empty), n_negatives=2,
                                 sampler="popularity", seed=1)
    inclusion = np.bincount(negatives.ravel(), minlength=4) / n_empty
    W = w.sum()
    exact = [sum(w[a] / W * w[b] / (W - w[a]) for a in range(4) for b in range(4)
                 if a != b and j in (a, b)) for j in range(4)]
    np.testing.assert_allclose(inclusion, exact, atol=0.015)


def test_uniform_sampler_is_uniform():
    n_users, n_items = 3000, 20
    train = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    test = sp.csr_matrix((np.ones(n_users, np.float32), (np.arange(n_users), np.zeros(n_users, int))),
                         shape=(n_users, n_items))
    negatives = sample_negatives(train, test, n_negatives=5, sampler="uniform", seed=0)
    observed = np.bincount(negatives.ravel(), minlength=n_items)
    assert observed[0] == 0
    expected = np.full(n_items - 1, n_users * 5 / (n_items - 1))
    assert stats.chisquare(observed[1:], expected).pvalue > 0.001


def test_few_eligible_negatives_warn_and_rank_against_all():
    train, test, scores = make_data(seed=6)
    model = FixedScores(scores).fit(train)
    with pytest.warns(UserWarning, match="fewer than 500 eligible negatives"):
        got = sampled_ranking_metrics(model, train, test, n_negatives=500, k=10)
    negatives = sample_negatives(train, test, users=eval_users(test), n_negatives=500, seed=0)
    expected, _ = brute_force(scores, test, negatives, eval_users(test), (10,))
    assert got["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)


def test_validation():
    train, test, scores = make_data(seed=7)
    model = FixedScores(scores).fit(train)
    with pytest.raises(ValueError, match="sampler =="):
        sampled_ranking_metrics(model, train, test, sampler="zipf")
    with pytest.raises(ValueError, match="n_negatives =="):
        sampled_ranking_metrics(model, train, test, n_negatives=0)
    with pytest.raises(ValueError, match="k =="):
        sampled_ranking_metrics(model, train, test, k=0)
    with pytest.raises(DataError, match="same shape"):
        sampled_ranking_metrics(model, train, test[:-1])
    with pytest.raises(DataError, match="one row per evaluated user"):
        sampled_ranking_metrics(model, train, test, negatives=np.zeros((3, 5), int))
    with pytest.raises(DataError, match="item ids"):
        sampled_ranking_metrics(model, train, test, negatives=np.full((eval_users(test).size, 5), N_ITEMS))
    with pytest.raises(TypeError, match="score"):
        sampled_ranking_metrics(object(), train, test)
    nan_model = FixedScores(np.full((N_USERS, N_ITEMS), np.nan, np.float32)).fit(train)
    with pytest.raises(DataError, match="NaN"):
        sampled_ranking_metrics(nan_model, train, test)
