"""Rel-MF, UBPR and clipped-DR losses: Monte-Carlo estimator correctness (the most important
tests of the MNAR work), the sampled-pair objectives against the all-pairs loss, bad input."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import recfb.losses as L
from recfb.losses import Batch

N_DRAWS = 4000


def _world(seed=0, n_users=12, n_items=15):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n_users, n_items, generator=g, dtype=torch.float64) * 1.5
    relevance = (torch.rand(n_users, n_items, generator=g, dtype=torch.float64) < 0.4).double()
    theta = 0.03 + 0.97 * torch.rand(n_users, n_items, generator=g, dtype=torch.float64) ** 2
    return scores, relevance, theta, g


def _clicks(relevance, theta, g, n=N_DRAWS):
    exposed = torch.rand((n, *theta.shape), generator=g, dtype=torch.float64) < theta
    return exposed.double() * relevance


def _z(samples, truth):
    """Distance of the Monte-Carlo mean from ``truth`` in standard errors."""
    samples = torch.as_tensor(samples, dtype=torch.float64)
    se = samples.std() / np.sqrt(samples.numel())
    return float((samples.mean() - truth).abs() / se)


def test_relmf_is_unbiased_for_the_ideal_loss_and_naive_bce_is_not():
    scores, relevance, theta, g = _world()
    Y = _clicks(relevance, theta, g)
    ideal = float(L.ideal_pointwise_loss(scores, relevance))
    # independent computation of the ideal loss
    manual = (relevance * F.softplus(-scores) + (1 - relevance) * F.softplus(scores)).mean()
    assert abs(ideal - float(manual)) < 1e-12
    rel = torch.stack([L.relmf(scores, y, theta) for y in Y])
    naive = torch.stack([L.relmf(scores, y, torch.ones_like(theta)) for y in Y])
    assert _z(rel, ideal) < 3.0
    assert _z(naive, ideal) > 10.0


@pytest.mark.parametrize("loss", ["log", "squared"])
def test_relmf_unbiased_for_both_pointwise_losses_and_clipping_biases_it(loss):
    scores, relevance, theta, g = _world(seed=1)
    Y = _clicks(relevance, theta, g)
    ideal = float(L.ideal_pointwise_loss(scores, relevance, loss=loss))
    rel = torch.stack([L.relmf(scores, y, theta, loss=loss) for y in Y])
    clipped = torch.stack([L.relmf(scores, y, theta, clip=0.3, loss=loss) for y in Y])
    assert _z(rel, ideal) < 3.0
    assert _z(clipped, ideal) > 5.0
    assert clipped.var() < rel.var()  # clipping trades bias for variance


def test_dr_relmf_with_correct_imputation_is_unbiased_under_clipping_with_lower_variance():
    scores, relevance, theta, g = _world(seed=2)
    Y = _clicks(relevance, theta, g)
    ideal = float(L.ideal_pointwise_loss(scores, relevance))
    dr = torch.stack([L.dr_relmf(scores, y, theta, relevance, clip=0.2) for y in Y])
    rel = torch.stack([L.relmf(scores, y, theta) for y in Y])
    assert _z(dr, ideal) < 3.0
    assert dr.var() < 0.5 * rel.var()
    # without clipping it is Rel-MF whatever the imputation
    junk = torch.full_like(relevance, 0.7)
    assert torch.allclose(L.dr_relmf(scores, Y[0], theta, junk), L.relmf(scores, Y[0], theta))
    # a wrong imputation leaves bias only on the clipped pairs: (1 - theta/theta_c)(r_hat - R)(l+ - l-)
    wrong = torch.stack([L.dr_relmf(scores, y, theta, junk, clip=0.2) for y in Y[:200]]).mean()
    tc = theta.clamp(min=0.2)
    bias = ((1 - theta / tc) * (junk - relevance) * (F.softplus(-scores) - F.softplus(scores))).mean()
    assert abs(float(wrong) - (ideal + float(bias))) < 0.05 * abs(float(bias)) + 0.02


def _pairwise(scores):
    n_users, n_items = scores.shape
    pos = scores                                              # (U, I)
    neg = scores.unsqueeze(1).expand(n_users, n_items, n_items)  # (U, I, J)
    mask = ~torch.eye(n_items, dtype=torch.bool).expand(n_users, -1, -1)
    return pos, neg, mask


def test_ubpr_is_unbiased_for_the_ideal_pairwise_loss_and_naive_bpr_is_not():
    scores, relevance, theta, g = _world(seed=3, n_users=8, n_items=10)
    Y = _clicks(relevance, theta, g, n=3000)
    pos, neg, mask = _pairwise(scores)
    ideal_terms = L.ideal_pairwise_loss(pos, neg, relevance, relevance.unsqueeze(1).expand_as(neg), reduction="none")
    ideal = float(ideal_terms[mask].mean())
    # independent: explicit sum over i != j
    manual = sum(float(relevance[u, i] * (1 - relevance[u, j]) * F.softplus(-(scores[u, i] - scores[u, j])))
                 for u in range(8) for i in range(10) for j in range(10) if i != j) / (8 * 10 * 9)
    assert abs(ideal - manual) < 1e-10
    ones = torch.ones_like(theta)

    def est(y, t):
        terms = L.ubpr(pos, neg, y, y.unsqueeze(1).expand_as(neg), t, t.unsqueeze(1).expand_as(neg), reduction="none")
        return terms[mask].mean()
    unbiased = torch.stack([est(y, theta) for y in Y])
    naive = torch.stack([est(y, ones) for y in Y])
    assert _z(unbiased, ideal) < 3.0
    assert _z(naive, ideal) > 10.0


def test_nonnegative_ubpr_floors_pair_terms():
    pos = torch.tensor([0.0])
    neg = torch.tensor([[10.0, -10.0]])
    terms = L.ubpr(pos, neg, torch.ones(1), torch.tensor([[1.0, 0.0]]), torch.tensor([0.5]), torch.tensor([[0.1, 0.5]]),
                   reduction="none")
    assert terms[0, 0] < -10  # clicked j with theta 0.1: weight 2 * (1 - 10) < 0, unbounded below
    floored = L.ubpr(pos, neg, torch.ones(1), torch.tensor([[1.0, 0.0]]), torch.tensor([0.5]),
                     torch.tensor([[0.1, 0.5]]), nonnegative=True, beta=0.5, reduction="none")
    assert float(floored[0, 0]) == -0.5 and torch.allclose(floored[0, 1], terms[0, 1])


# ------------------------------------------------------------------ objectives over sampled pairs
def _objective_world(seed=4):
    rng = np.random.default_rng(seed)
    dense = (rng.random((9, 11)) < 0.3).astype(np.float32)
    dense[np.arange(9), np.arange(9)] = 1.0  # every user has a click
    X = sp.csr_matrix(dense)
    scores = torch.as_tensor(rng.normal(0, 1.5, X.shape), dtype=torch.float32)
    theta = (0.05 + 0.95 * rng.random(X.shape)).astype(np.float32)
    return X, scores, theta


def _all_negatives_batch(X, scores):
    coo = X.tocoo()
    users = torch.as_tensor(coo.row.astype(np.int64))
    items = torch.as_tensor(coo.col.astype(np.int64))
    negs = torch.arange(X.shape[1]).expand(users.numel(), -1)
    return scores[users, items], scores[users.unsqueeze(1), negs], Batch(users, items, negs, torch.arange(users.numel()))


@pytest.mark.parametrize("clip", [None, 0.2])
def test_relmf_objective_with_every_item_as_negative_equals_all_pairs_loss_per_click(clip):
    X, scores, theta = _objective_world()
    obj = L.RelMF(propensity=theta, clip=clip)
    obj.setup(X, "cpu")
    pos, neg, batch = _all_negatives_batch(X, scores)
    pl, nl = obj(pos, neg, batch)
    Y = torch.as_tensor(X.toarray())
    full = L.relmf(scores, Y, torch.as_tensor(theta), clip=clip, reduction="sum") / X.nnz
    assert torch.allclose(pl.mean() + nl.mean(), full, atol=1e-5)


def test_relmf_objective_with_uniform_negatives_is_unbiased_monte_carlo():
    X, scores, theta = _objective_world(seed=5)
    obj = L.RelMF(propensity=theta)
    obj.setup(X, "cpu")
    pos, _, batch = _all_negatives_batch(X, scores)
    g = torch.Generator().manual_seed(0)
    vals = []
    for _ in range(400):
        j = torch.randint(0, X.shape[1], (pos.numel(), 3), generator=g)
        pl, nl = obj(pos, scores[batch.users.unsqueeze(1), j], Batch(batch.users, batch.items, j, batch.index))
        vals.append(float(pl.mean() + nl.mean()))
    full = float(L.relmf(scores, torch.as_tensor(X.toarray()), torch.as_tensor(theta), reduction="sum") / X.nnz)
    assert _z(vals, full) < 3.5


def test_dr_objective_all_negatives_equals_dr_loss_with_self_imputation():
    X, scores, theta = _objective_world(seed=6)
    obj = L.DRRelMF(propensity=theta, clip=0.3)
    obj.setup(X, "cpu")
    pos, neg, batch = _all_negatives_batch(X, scores)
    pl, nl = obj(pos, neg, batch)
    full = L.dr_relmf(scores, torch.as_tensor(X.toarray()), torch.as_tensor(theta), torch.sigmoid(scores), clip=0.3,
                      reduction="sum") / X.nnz
    assert torch.allclose(pl.mean() + nl.mean(), full, atol=1e-5)


def test_ubpr_objective_with_every_item_as_negative_matches_direct_sum():
    X, scores, theta = _objective_world(seed=7)
    obj = L.UBPR(propensity=theta, clip=0.1)
    obj.setup(X, "cpu")
    pos, neg, batch = _all_negatives_batch(X, scores)
    pl, nl = obj(pos, neg, batch)
    Y, T = X.toarray(), np.maximum(theta, 0.1)
    expected = []
    for u, i in zip(*X.nonzero()):  # independent, loop-based reference
        expected.append(np.mean([(1 / T[u, i]) * (1 - Y[u, j] / T[u, j])
                                 * np.log1p(np.exp(-(float(scores[u, i]) - float(scores[u, j]))))
                                 for j in range(X.shape[1])]))
    order = np.lexsort((X.nonzero()[1], X.nonzero()[0]))
    assert np.allclose(pl.numpy(), np.asarray(expected)[order], atol=1e-4)
    assert float(nl.abs().sum()) == 0.0


def test_popularity_propensity_by_default_in_objectives():
    X, scores, _ = _objective_world(seed=8)
    obj = L.RelMF(eta=0.5)
    obj.setup(X, "cpu")
    n = np.bincount(X.indices, minlength=X.shape[1])
    assert np.allclose(obj.theta_.numpy(), (np.maximum(n, 1) / n.max()) ** 0.5, atol=1e-6)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_propensity_values_raise_naming_the_value(bad):
    theta = torch.tensor([0.5, bad])
    with pytest.raises(ValueError, match="propensit"):
        L.relmf(torch.zeros(2), torch.zeros(2), theta)


@pytest.mark.parametrize("clip", [0.0, -1, 1.01, "0.1", True])
def test_bad_clip_raises(clip):
    with pytest.raises(ValueError, match="clip =="):
        L.relmf(torch.zeros(2), torch.zeros(2), torch.ones(2), clip=clip)
    with pytest.raises(ValueError, match="clip =="):
        L.RelMF(clip=clip)


def test_bad_objective_options_raise():
    with pytest.raises(ValueError, match="loss == 'hinge'"):
        L.RelMF(loss="hinge")
    with pytest.raises(ValueError, match="propensity == 'exposure'"):
        L.UBPR(propensity="exposure")
    with pytest.raises(ValueError, match="negative_weight"):
        L.RelMF(negative_weight=0)
    with pytest.raises(ValueError, match="beta"):
        L.UBPR(beta=-1)
    X, _, _ = _objective_world()
    with pytest.raises(ValueError, match="shape"):
        L.RelMF(propensity=np.full(3, 0.5)).setup(X, "cpu")
