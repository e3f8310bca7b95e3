"""Propensity models (popularity, exposure log, position-based regression-EM), clipping,
IPS/SNIPS weights, the semi-synthetic world, and bad input."""
import numpy as np
import pytest
import scipy.sparse as sp

from recfb.debias import (
    ExposurePropensity,
    PositionBasedModel,
    check_propensity,
    clip_propensity,
    interaction_propensity,
    ips_weights,
    make_semi_synthetic,
    popularity_propensity,
)
from recfb.utils.errors import DataError


def _X():
    return sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], np.float32))


def test_popularity_propensity_is_saitos_power_law():
    theta = popularity_propensity(_X(), eta=0.5)
    # counts 3, 2, 1, 0 -> (n / 3) ** 0.5, an unclicked item as one click
    assert np.allclose(theta, np.sqrt([1, 2 / 3, 1 / 3, 1 / 3]))
    assert np.allclose(popularity_propensity(_X(), eta=0), 1.0)


def test_clipping_and_self_normalised_weights():
    theta = np.array([0.01, 0.2, 0.5, 1.0])
    assert np.allclose(clip_propensity(theta, 0.1), [0.1, 0.2, 0.5, 1.0])
    assert np.allclose(ips_weights(theta, clip=0.1), [10, 5, 2, 1])
    w = ips_weights(theta, clip=0.1, self_normalize=True)
    assert np.isclose(w.mean(), 1.0) and np.allclose(w / w[-1], [10, 5, 2, 1])


def test_interaction_propensity_and_weights_follow_csr_order():
    X = _X()
    per_item = np.array([0.5, 0.25, 1.0, 1.0])
    assert np.allclose(interaction_propensity(X, per_item), per_item[X.indices])
    per_pair = np.linspace(0.1, 1.0, 12).reshape(3, 4)
    rows = np.repeat(np.arange(3), np.diff(X.indptr))
    assert np.allclose(ips_weights(per_pair, X=X), 1 / per_pair[rows, X.indices])
    with pytest.raises(DataError, match="expected one per item"):
        interaction_propensity(X, np.full(3, 0.5))


def test_exposure_log_frequency_and_logistic_recover_item_rates():
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 6
    true = np.linspace(0.1, 0.9, n_items)
    users, items = (a.ravel() for a in np.indices((n_users, n_items)))
    shown = (rng.random(users.size) < true[items]).astype(int)
    for model in ("frequency", "logistic"):
        est = ExposurePropensity(model=model, smoothing=1.0).fit(users, items, shown, n_users=n_users, n_items=n_items)
        item_mean = est.propensity_.mean(axis=0)
        assert np.abs(item_mean - true).max() < 0.08, (model, item_mean)
        assert est.predict([0, 1], [5, 0]).shape == (2,)


def test_exposure_log_bad_input():
    with pytest.raises(DataError, match="item id 9 outside the catalogue 0..3"):
        ExposurePropensity().fit([0, 1], [1, 9], [1, 0], n_users=2, n_items=4)
    with pytest.raises(DataError, match="shown == 2"):
        ExposurePropensity().fit([0, 1], [1, 2], [1, 2], n_users=2, n_items=4)
    with pytest.raises(ValueError, match="model == 'probit'"):
        ExposurePropensity(model="probit").fit([0], [0], [1], n_users=1, n_items=1)


def test_position_based_em_recovers_examination_propensities():
    rng = np.random.default_rng(1)
    n_queries, n_docs, n_pos, n_rows = 50, 20, 6, 60_000
    theta = 1.0 / np.arange(1, n_pos + 1) ** 0.8
    gamma = rng.uniform(0.1, 0.9, (n_queries, n_docs))
    q = rng.integers(0, n_queries, n_rows)
    d = rng.integers(0, n_docs, n_rows)
    k = rng.integers(1, n_pos + 1, n_rows)  # randomised rankings: each pair seen at many positions
    c = (rng.random(n_rows) < theta[k - 1] * gamma[q, d]).astype(int)
    pbm = PositionBasedModel(iterations=300).fit(q, d, k, c)
    assert np.abs(pbm.propensity_ - theta / theta[0]).max() < 0.06, pbm.propensity_
    assert np.allclose(pbm.weights([1, 2], clip=None), 1 / pbm.propensity_[:2])
    # regression-EM: relevance from features (here the one-hot pair id's true gamma logit)
    feats = np.log(gamma[q, d] / (1 - gamma[q, d]))[:, None]
    pbm_r = PositionBasedModel(iterations=100).fit(q, d, k, c, features=feats)
    assert np.abs(pbm_r.propensity_ - theta / theta[0]).max() < 0.1, pbm_r.propensity_


def test_position_based_bad_input():
    with pytest.raises(DataError, match="position == 0"):
        PositionBasedModel().fit([0, 0], [0, 1], [0, 1], [1, 0])
    with pytest.raises(DataError, match="clicks == 3"):
        PositionBasedModel().fit([0, 0], [0, 1], [1, 2], [1, 3])
    with pytest.raises(DataError, match="positions must be in 1..2"):
        PositionBasedModel().fit([0, 0], [0, 1], [1, 2], [1, 0]).weights([3])


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.2, np.nan, np.inf])
def test_bad_propensities_raise_naming_the_value(bad):
    with pytest.raises(DataError, match="propensit"):
        check_propensity([0.5, bad])
    with pytest.raises(DataError):
        ips_weights(np.array([bad, 0.3]))


@pytest.mark.parametrize("clip", [0, -0.1, 1.5, "a"])
def test_bad_clip_raises(clip):
    with pytest.raises(ValueError, match="clip =="):
        clip_propensity([0.5], clip)


def test_bad_eta_raises():
    with pytest.raises(ValueError, match="eta == -1"):
        popularity_propensity(_X(), eta=-1)


def test_semi_synthetic_world_is_seeded_and_mnar():
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((60, 40)) < 0.3, rng.integers(1, 6, (60, 40)), 0)
    dense[:, :5] = np.where(rng.random((60, 5)) < 0.9, 4, 0)  # a few popular items
    R = sp.csr_matrix(dense.astype(np.float32))
    a = make_semi_synthetic(R, rank=3, seed=1)
    b = make_semi_synthetic(R, rank=3, seed=1)
    assert (a.train != b.train).nnz == 0 and np.array_equal(a.relevance_prob, b.relevance_prob)
    assert a.relevance_prob.min() >= 0.1 - 1e-6 and a.relevance_prob.max() <= 1 + 1e-6
    assert a.relevance_prob.std() > 0.01  # completed ratings vary
    assert (a.train.multiply(a.valid)).nnz == 0
    assert np.isclose(a.propensity.max(), 1.0) and a.propensity[0, :5].mean() > a.propensity[0, 5:].mean()


def test_completion_shrinks_the_biases_of_rarely_rated_items():
    # 40 items rated 2-4 by most users; item 40 rated once, a 5. An unpenalised item bias
    # completes it near 5 for everyone, making the least-rated item the world's most relevant.
    from recfb.debias import complete_ratings
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((80, 41)) < 0.5, rng.integers(2, 5, (80, 41)), 0).astype(np.float32)
    dense[:, 40] = 0
    dense[0, 40] = 5
    C = complete_ratings(sp.csr_matrix(dense), rank=2, seed=0)
    others = C[:, :40].mean(0)
    assert C[1:, 40].mean() < others.max() + 0.3  # shrunk towards the mean, not top of the catalogue
    assert C[1:, 40].mean() < 4.0
