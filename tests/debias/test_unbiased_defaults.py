"""MF's defaults for the unbiased objectives (issue 13, chosen by ``benchmarks/defaults.py
--families unbiased``): the weight of each sampled negative, explicit values winning, bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recfb
from recfb.datasets.synthetic import make_world
from recfb.losses import Batch
from recfb.models import MF
from recfb.models.mf import UNBIASED_NEGATIVE_WEIGHT


@pytest.fixture(scope="module")
def X():
    return make_world(n_users=40, n_items=30, density=0.1, seed=3).clicks.matrix


def _negative_part(model, X):
    """The objective's negative part for every click with three fixed negatives, and an
    independent computation of ``mean_j softplus(s_uj)`` per click."""
    obj = model._objective(X)
    obj.setup(X, "cpu")
    coo = X.tocoo()
    users = torch.as_tensor(coo.row.astype(np.int64))
    items = torch.as_tensor(coo.col.astype(np.int64))
    g = torch.Generator().manual_seed(0)
    negs = torch.randint(0, X.shape[1], (users.numel(), 3), generator=g)
    pos, neg = torch.randn(users.numel(), generator=g), torch.randn(users.numel(), 3, generator=g)
    _, nl = obj(pos, neg, Batch(users, items, negs, torch.arange(users.numel())))
    return nl.numpy(), F.softplus(neg).mean(dim=1).numpy(), coo.row


@pytest.mark.parametrize("loss", ["relmf", "relmf_dr"])
def test_default_negative_weight_is_the_swept_one_not_the_all_pairs_weight(X, loss):
    model = MF(loss=loss)
    nl, plain, _ = _negative_part(model, X)
    assert UNBIASED_NEGATIVE_WEIGHT == 1.0 and model.negative_weight_ == 1.0
    if loss == "relmf":  # DR adds the imputed term on items needing no clipping; Rel-MF is exact
        np.testing.assert_allclose(nl, plain * 1.0, rtol=1e-5)


def test_explicit_negative_weight_wins(X):
    nl, plain, rows = _negative_part(MF(loss="relmf", negative_weight="all"), X)
    n_u = np.diff(X.indptr)[rows]
    np.testing.assert_allclose(nl, plain * X.shape[1] / n_u, rtol=1e-5)  # the exact all-pairs weight
    nl4, plain4, _ = _negative_part(MF(loss="relmf", negative_weight=4.0), X)
    np.testing.assert_allclose(nl4, 4.0 * plain4, rtol=1e-5)


def test_default_is_recorded_after_fit_and_survives_save_load(X, tmp_path):
    model = MF(loss="relmf", factors=4, iterations=1, device="cpu").fit(X, show_progress=False)
    assert model.negative_weight is None and model.negative_weight_ == UNBIASED_NEGATIVE_WEIGHT
    model = MF(loss="relmf", negative_weight="all", factors=4, iterations=1, device="cpu").fit(X, show_progress=False)
    back = recfb.load(model.save(tmp_path / "m.npz"))
    assert back.negative_weight == "all"
    np.testing.assert_array_equal(back.item_factors, model.item_factors)


@pytest.mark.parametrize("loss", ["bpr", "bce", "ubpr"])
def test_negative_weight_for_a_loss_without_one_is_refused(X, loss):
    with pytest.raises(ValueError, match=r"negative_weight == 2\.0 applies to loss='relmf' or 'relmf_dr'"):
        MF(loss=loss, negative_weight=2.0, iterations=1).fit(X, show_progress=False)


def test_bad_negative_weight_names_the_value(X):
    with pytest.raises(ValueError, match="negative_weight == -1"):
        MF(loss="relmf", negative_weight=-1, iterations=1).fit(X, show_progress=False)
