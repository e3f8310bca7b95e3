"""MF wired to the unbiased objectives: parameters, training, save/load, bad input."""
import numpy as np
import pytest

import recfb
from recfb.datasets.synthetic import make_world
from recfb.models import MF


@pytest.fixture(scope="module")
def X():
    return make_world(n_users=60, n_items=40, density=0.08, seed=0).clicks.matrix


@pytest.mark.parametrize("loss", ["relmf", "ubpr", "relmf_dr"])
def test_unbiased_losses_train_and_recommend(X, loss):
    model = MF(loss=loss, propensity="popularity", eta=0.5, clip=0.1, factors=8, iterations=3,
               batch_size=256, device="cpu").fit(X, show_progress=False)
    ids, scores = model.recommend(np.arange(5), X[:5], N=5)
    assert ids.shape == (5, 5) and np.isfinite(scores).all()
    assert np.isfinite(model.history_[-1]["loss"])


def test_params_round_trip_and_array_propensity_saves(X, tmp_path):
    model = MF(loss="relmf", propensity="popularity", eta=0.3, clip=0.1)
    assert {"propensity": "popularity", "eta": 0.3, "clip": 0.1}.items() <= model.get_params().items()
    assert model.set_params(clip=0.2).clip == 0.2
    theta = np.linspace(0.05, 1.0, X.shape[1])
    model = MF(loss="ubpr", propensity=theta, factors=4, iterations=1, device="cpu").fit(X, show_progress=False)
    path = model.save(tmp_path / "m.npz")
    back = recfb.load(path)
    assert np.allclose(back.propensity, theta) and back.loss == "ubpr"
    assert np.allclose(back.user_factors, model.user_factors)
    assert isinstance(model.propensity, np.ndarray)  # save leaves the model as it was


def test_same_seed_same_model(X):
    a = MF(loss="relmf", clip=0.1, factors=4, iterations=2, device="cpu").fit(X, show_progress=False)
    b = MF(loss="relmf", clip=0.1, factors=4, iterations=2, device="cpu").fit(X, show_progress=False)
    assert np.array_equal(a.item_factors, b.item_factors)


def test_unbiased_losses_with_bad_input_fail_clearly(X):
    with pytest.raises(ValueError, match="clip == 1.5"):
        MF(loss="relmf", clip=1.5, iterations=1, device="cpu").fit(X, show_progress=False)
    bad = np.full(X.shape[1], 0.5)
    bad[3] = 0.0
    with pytest.raises(ValueError, match="propensity == 0.0"):
        MF(loss="relmf", propensity=bad, iterations=1, device="cpu").fit(X, show_progress=False)
    with pytest.raises(ValueError, match=r"propensity has shape \(3,\)"):
        MF(loss="ubpr", propensity=np.full(3, 0.5), iterations=1, device="cpu").fit(X, show_progress=False)
