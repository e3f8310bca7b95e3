"""MF's defaults for the unbiased objectives (issue 13, chosen by ``benchmarks/defaults.py
--families unbiased``): the weight of each sampled negative, explicit values winning, bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recfb
from recfb.datasets.synthetic import make_world
from recfb.losses import Batch
from recfb.models import BPR, MF
from recfb.models.mf import UBPR_CLIP, UNBIASED_ETA, unbiased_auto_settings


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
    # the number of negatives (4 by default): each negative weighs 1 in a sum, as in naive BCE
    two = MF(loss=loss, num_negatives=2)
    two._objective(X)
    assert model.negative_weight_ == 4.0 and two.negative_weight_ == 2.0
    if loss == "relmf":  # DR adds the imputed term on items needing no clipping; Rel-MF is exact
        np.testing.assert_allclose(nl, plain * 4.0, rtol=1e-5)


def test_explicit_negative_weight_wins(X):
    nl, plain, rows = _negative_part(MF(loss="relmf", negative_weight="all"), X)
    n_u = np.diff(X.indptr)[rows]
    np.testing.assert_allclose(nl, plain * X.shape[1] / n_u, rtol=1e-5)  # the exact all-pairs weight
    nl4, plain4, _ = _negative_part(MF(loss="relmf", negative_weight=4.0), X)
    np.testing.assert_allclose(nl4, 4.0 * plain4, rtol=1e-5)


def test_default_is_recorded_after_fit_and_survives_save_load(X, tmp_path):
    model = MF(loss="relmf", factors=4, iterations=1, device="cpu").fit(X, show_progress=False)
    assert model.negative_weight is None and model.negative_weight_ == 4.0
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


def test_unbiased_defaults_follow_the_documented_rules(X):
    """eta 0.25 (Rel-MF, DR) / 0.5 (UBPR), UBPR non-negative on propensities floored at 0.1,
    L2 0.1, epochs clip(1e6 / nnz, 20, 100), batch clip(nnz // 10, 1024, 8192); explicit values win."""
    assert UNBIASED_ETA == {"relmf": 0.25, "relmf_dr": 0.25, "ubpr": 0.5} and UBPR_CLIP == 0.1
    for n, (ep, batch) in {1_500: (100, 1024), 55_143: (20, 5514), 2e6: (20, 8192)}.items():
        assert unbiased_auto_settings(n) == {"regularization": 0.1, "iterations": ep, "batch_size": batch}
    for loss in ("relmf", "relmf_dr", "ubpr"):
        m = MF(loss=loss, factors=4, iterations=1, device="cpu").fit(X, show_progress=False)
        assert m.optimizer_ == "adam" and m.eta_ == UNBIASED_ETA[loss] and m.regularization_ == 0.1
        assert m.batch_size_ == 1024 and m.iterations_ == 1
        assert m.num_negatives_ == 4  # UBPR too: its pair terms are averaged over 4 negatives
    assert MF(loss="ubpr", num_negatives=2, factors=4, iterations=1, device="cpu").fit(
        X, show_progress=False).num_negatives_ == 2
    assert BPR(factors=4, iterations=1, device="cpu").fit(X, show_progress=False).num_negatives_ == 1
    ubpr = MF(loss="ubpr")._objective(X)
    assert ubpr.nonnegative and ubpr.clip == 0.1
    explicit = MF(loss="relmf", eta=0.7)
    explicit._objective(X)
    assert MF(loss="ubpr", clip=0.3)._objective(X).clip == 0.3 and explicit.eta_ == 0.7
    fitted = MF(loss="relmf", factors=4, device="cpu", batch_size=512).fit(X, show_progress=False)
    assert fitted.batch_size_ == 512 and fitted.iterations_ == int(np.clip(round(1e6 / X.nnz), 20, 100))
    # the naive losses keep their own rules (BCE's L2 on the kernel, 8192 batches)
    bce = MF(loss="bce", factors=4, iterations=1, device="cpu").fit(X, show_progress=False)
    assert bce.batch_size_ == 8192 and bce.regularization_ == 0.06  # clip(0.04 sqrt(1e5 / nnz)) at 0.06
