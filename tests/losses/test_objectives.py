import numpy as np
import pytest
import torch

from recfb.losses import BCE, BPR, WARPHinge, bce_loss, bpr_loss, covariance_penalty, make_objective, warp_hinge_loss


def test_bpr_closed_form():
    pos = torch.tensor([1.0, -2.0])
    neg = torch.tensor([[0.0, 3.0], [1.0, -2.0]])
    expected = [np.mean([np.log1p(np.exp(-(1 - 0))), np.log1p(np.exp(-(1 - 3)))]),
                np.mean([np.log1p(np.exp(-(-2 - 1))), np.log1p(np.exp(0))])]
    np.testing.assert_allclose(bpr_loss(pos, neg).numpy(), expected, rtol=1e-6)


def test_bce_closed_form():
    pos = torch.tensor([2.0])
    neg = torch.tensor([[0.5, -1.0]])
    p, n = bce_loss(pos, neg)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(p.numpy(), [-np.log(sig(2.0))], rtol=1e-6)
    np.testing.assert_allclose(n.numpy(), [-np.log(1 - sig(0.5)) - np.log(1 - sig(-1.0))], rtol=1e-6)


def test_warp_hinge_brute_force():
    rng = np.random.default_rng(0)
    pos = rng.normal(size=5).astype(np.float32)
    neg = rng.normal(size=(5, 7)).astype(np.float32)
    m, n_items = 0.5, 100
    got = warp_hinge_loss(torch.tensor(pos), torch.tensor(neg), m, n_items).numpy()
    for b in range(5):
        violators = sum(m - pos[b] + neg[b, j] > 0 for j in range(7))
        w = np.log(1 + np.floor(n_items * violators / 7))
        expected = w * max(0.0, m - pos[b] + neg[b].max())
        assert got[b] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_covariance_penalty_matches_numpy():
    x = np.random.default_rng(1).normal(size=(20, 4))
    c = np.cov(x.T, bias=True)
    expected = (np.sum(c ** 2) - np.sum(np.diag(c) ** 2)) / 20
    assert covariance_penalty(torch.tensor(x)).item() == pytest.approx(expected, rel=1e-6)


def test_objective_factory():
    assert isinstance(make_objective("bpr"), BPR) and isinstance(make_objective("bce"), BCE)
    with pytest.raises(ValueError, match="loss == 'nope'"):
        make_objective("nope")
    with pytest.raises(ValueError, match="margin"):
        WARPHinge(margin=0)
