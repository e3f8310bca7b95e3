"""R-CE inside the compiled MF kernel: one sample's update equals the autograd SGD step on
R-CE's weighted loss (weights held constant, as the training step holds them), and
optimizer="auto" takes the kernel for R-CE while T-CE and PLD stay on autograd."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recfb.denoise import PLD, RCE, TCE
from recfb.models import MF
from recfb.testing import checkerboard_holdout
from recfb.train._fused import mf_sgd_epoch


@pytest.mark.parametrize("objective", ["bpr", "bce"])
@pytest.mark.parametrize("rce_neg", [True, False])
def test_one_rce_sample_update_equals_autograd(objective, rce_neg):
    rng = np.random.default_rng(1)
    U = rng.normal(size=(3, 4)).astype(np.float32)
    V = rng.normal(size=(5, 4)).astype(np.float32)
    lr, reg, beta, w = 0.1, 0.01, 0.5, 0.7
    u, i, negs = 1, 2, np.array([[0, 4]])
    tu, tv = torch.tensor(U, requires_grad=True), torch.tensor(V, requires_grad=True)
    pos, neg = tv[i] @ tu[u], tv[negs[0]] @ tu[u]
    wp = torch.sigmoid(pos).detach() ** beta
    wn = torch.sigmoid(-neg).detach() ** beta if rce_neg else torch.ones(2)
    if objective == "bpr":
        pos_loss = (wn * -F.logsigmoid(pos - neg)).mean()
        loss = w * wp * pos_loss
    else:
        pos_loss = F.softplus(-pos)
        loss = w * wp * pos_loss + (wn * F.softplus(neg)).sum()
    loss.backward()
    expected_u = U[u] - lr * (tu.grad[u].numpy() + reg * U[u])
    rows = [i, 0, 4]
    expected_v = V.copy()
    for r in rows:
        expected_v[r] = V[r] - lr * (tv.grad[r].numpy() + reg * V[r])
    last_loss, last_weight = np.full(3, np.nan, np.float32), np.ones(3, np.float32)
    got = mf_sgd_epoch(U, V, None, np.array([0, u, 0]), np.array([0, i, 0]), np.array([1]), negs,
                       np.array([1.0, w, 1.0], np.float32), lr, reg, objective, 1,
                       rce=(beta, rce_neg, last_loss, last_weight))
    assert got == pytest.approx(float(loss.detach()), rel=1e-5)
    np.testing.assert_allclose(U[u], expected_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V[rows], expected_v[rows], rtol=1e-5, atol=1e-6)
    assert last_loss[1] == pytest.approx(float(pos_loss.detach()), rel=1e-5) and np.isnan(last_loss[[0, 2]]).all()
    assert last_weight[1] == pytest.approx(float(wp), rel=1e-5)


def test_auto_takes_the_kernel_for_rce_only():
    X, _ = checkerboard_holdout(16)
    kw = dict(factors=8, iterations=3, device="cpu", num_threads=1)
    rce = MF(loss="bce", denoise=RCE(), **kw).fit(X, show_progress=False)
    assert rce.optimizer_ == "fused_sgd"
    scores = rce.denoise.noise_scores()
    assert scores.shape == (X.nnz,) and np.all((scores >= 0) & (scores <= 1))
    assert not np.allclose(scores, 0)  # the kernel recorded its weights
    assert MF(loss="bpr", denoise=RCE(), **kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"
    assert MF(loss="bce", denoise=TCE(), **kw).fit(X, show_progress=False).optimizer_ == "adam"
    assert MF(loss="bpr", denoise=PLD(), **kw).fit(X, show_progress=False).optimizer_ == "adam"
    with pytest.raises(ValueError, match=r"a denoiser \(TCE\) needs per-batch losses; the kernel implements RCE"):
        MF(loss="bce", denoise=TCE(), optimizer="fused_sgd", **kw).fit(X, show_progress=False)


def test_rce_with_beta_zero_on_the_kernel_is_the_plain_loss():
    X, _ = checkerboard_holdout(16)
    kw = dict(factors=8, iterations=3, device="cpu", num_threads=1, loss="bce")
    plain = MF(**kw).fit(X, show_progress=False)
    rce0 = MF(denoise=RCE(beta=0.0), **kw).fit(X, show_progress=False)
    np.testing.assert_array_equal(plain.item_factors, rce0.item_factors)
