"""make_world: seeded, shaped as documented, calibrated, with truthful exposure and noise labels."""
import dataclasses

import numpy as np
import pytest

from recfb import datasets
from recfb.data import split
from recfb.datasets import SyntheticWorld, make_world

SMALL = {"n_users": 300, "n_items": 200, "rank": 4}


def arrays(world):
    c = world.clicks
    return {"users": c.users, "items": c.items, "timestamps": c.timestamps,
            **{f.name: getattr(world, f.name) for f in dataclasses.fields(world)
               if isinstance(getattr(world, f.name), np.ndarray)}}


def test_same_seed_same_world_and_different_seed_different():
    a, b = make_world(seed=3, noise_rate=0.1, **SMALL), make_world(seed=3, noise_rate=0.1, **SMALL)
    for name, value in arrays(a).items():
        assert np.array_equal(value, arrays(b)[name]), name
    c = make_world(seed=4, noise_rate=0.1, **SMALL)
    assert not np.array_equal(a.relevance_prob, c.relevance_prob)
    assert not np.array_equal(a.clicks.matrix.toarray(), c.clicks.matrix.toarray())


def test_shapes_and_dtypes():
    world = make_world(**SMALL)
    assert isinstance(world, SyntheticWorld) and (world.n_users, world.n_items) == (300, 200)
    for name, dtype in (("relevance_prob", np.float32), ("propensity", np.float32), ("relevant", bool),
                        ("exposed", bool)):
        assert getattr(world, name).shape == (300, 200) and getattr(world, name).dtype == dtype, name
    assert world.user_factors.shape == (300, 4) and world.item_factors.shape == (200, 4)
    assert world.clicks.shape == (300, 200) and world.noise_mask.shape == (len(world.clicks),)
    assert world.clicks.user_ids.tolist() == list(range(300))
    assert world.params["n_users"] == 300 and make_world(**world.params).clicks.matrix.nnz == world.clicks.matrix.nnz


def test_probabilities_are_in_range():
    world = make_world(popularity_exponent=1.5, **SMALL)
    assert world.propensity.min() > 0 and world.propensity.max() <= 1
    assert world.relevance_prob.min() > 0 and world.relevance_prob.max() < 1
    assert abs(world.relevance_prob.mean() - 0.2) < 0.01


def test_clean_clicks_are_exactly_exposed_and_relevant():
    world = make_world(noise_rate=0.2, **SMALL)
    clean = world.clean_clicks.matrix.toarray() > 0
    assert np.array_equal(clean, world.exposed & world.relevant)
    assert world.clean_clicks.matrix.nnz == len(world.clean_clicks)  # no duplicate rows


def test_noise_mask_marks_false_positives_at_the_requested_rate():
    world = make_world(noise_rate=0.25, **SMALL)
    noisy = world.clicks.subset(world.noise_mask)
    truth = world.exposed & world.relevant
    assert not truth[noisy.users, noisy.items].any()  # every injected click is a false positive
    assert abs(world.noise_mask.mean() - 0.25) < 0.002
    assert world.clicks.matrix.nnz == len(world.clicks)  # noise never duplicates a click
    assert not make_world(**SMALL).noise_mask.any()


@pytest.mark.parametrize("density,noise_rate,exponent", [(0.05, 0.0, 1.0), (0.02, 0.3, 2.0), (0.1, 0.1, 0.0)])
def test_observed_click_rate_is_calibrated_to_density(density, noise_rate, exponent):
    world = make_world(n_users=1000, n_items=500, density=density, noise_rate=noise_rate,
                       popularity_exponent=exponent)
    rate = len(world.clicks) / (1000 * 500)
    assert abs(rate - density) / density < 0.1


def test_exposure_follows_item_popularity():
    world = make_world(popularity_exponent=1.0, **SMALL)
    order = np.argsort(-world.item_popularity)
    exposure = world.propensity.mean(axis=0)
    assert exposure[order[0]] > 10 * exposure[order[-1]]
    flat = make_world(popularity_exponent=0.0, **SMALL)
    assert np.allclose(flat.propensity, flat.propensity[:, :1])  # no item effect at all


def test_every_user_has_a_click_even_when_sparse():
    world = make_world(density=0.001, **SMALL)  # ~0.2 expected clicks per user
    assert np.bincount(world.clicks.users, minlength=300).min() >= 1
    assert np.array_equal(world.clean_clicks.matrix.toarray() > 0, world.exposed & world.relevant)


def test_timestamps_increase_so_temporal_splits_work():
    world = make_world(**SMALL)
    assert np.all(np.diff(world.clicks.timestamps) > 0)
    train, test = split.temporal(world.clicks, test_fraction=0.2)
    assert train.timestamps.max() < test.timestamps.min()
    assert len(train) + len(test) == len(world.clicks)


@pytest.mark.parametrize("kwargs,message", [
    ({"density": 1.5}, r"density == 1\.5, must be in \(0, 1\)"),
    ({"noise_rate": 1.0}, r"noise_rate == 1\.0, must be in \[0, 1\)"),
    ({"popularity_exponent": -1}, r"popularity_exponent == -1, must be a finite number >= 0"),
    ({"density": 0.5}, r"density == 0\.5 .* is not reachable"),
])
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_world(**SMALL, **kwargs)
    with pytest.raises(TypeError, match="n_users must be an int"):
        make_world(n_users=10.5)


def test_load_synthetic_is_the_default_world():
    clicks = datasets.load("synthetic")
    expected = make_world().clicks
    assert np.array_equal(clicks.users, expected.users) and np.array_equal(clicks.items, expected.items)
    assert datasets.synthetic.make_world is make_world
