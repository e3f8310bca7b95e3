"""The compiled per-sample SGD kernel (optimizer="fused_sgd") against autograd."""
import numpy as np
import pytest
import torch

from recfb.denoise import Denoiser
from recfb.models import BPR, CML, MF, LightGCN
from recfb.testing import RecommenderContract, checkerboard_holdout
from recfb.train._fused import mf_sgd_epoch


def sgd_reference(U, V, tu, tv, u, rows, lr, reg):
    """One SGD step (+ L2) from autograd's gradients: the user row and the item ``rows``."""
    expected_u = U[u] - lr * (tu.grad[u].numpy() + reg * U[u])
    expected_v = V.copy()
    for r in rows:
        expected_v[r] = V[r] - lr * (tv.grad[r].numpy() + reg * V[r])
    return expected_u, expected_v


@pytest.mark.parametrize("objective,bias", [("bpr", False), ("bpr", True), ("bce", True)])
def test_one_sample_update_equals_autograd_sgd_step(objective, bias):
    """A single-sample epoch is one SGD step on the objective (+ L2), as autograd computes it.
    (The kernel updates item rows before the user row, using the old user vector for both.)"""
    rng = np.random.default_rng(0)
    U = rng.normal(size=(3, 4)).astype(np.float32)
    V = rng.normal(size=(5, 4)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32) if bias else None
    lr, reg = 0.1, 0.01
    u, i, negs = 1, 2, np.array([[0, 4]])
    tu, tv = torch.tensor(U, requires_grad=True), torch.tensor(V, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None

    def score(items):
        s = tv[items] @ tu[u]
        return s + tb[items] if bias else s

    pos, neg = score(torch.tensor([i])), score(torch.tensor(negs[0]))
    if objective == "bpr":
        loss = -torch.nn.functional.logsigmoid(pos - neg).mean()
    else:
        loss = torch.nn.functional.softplus(-pos).sum() + torch.nn.functional.softplus(neg).sum()
    loss.backward()
    rows = [i, 0, 4]
    expected_u, expected_v = sgd_reference(U, V, tu, tv, u, rows, lr, reg)
    got = mf_sgd_epoch(U, V, b, np.array([u]), np.array([i]), np.array([0]), negs, None, lr, reg, objective, 1)
    assert got == pytest.approx(float(loss), rel=1e-5)
    np.testing.assert_allclose(U[u], expected_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V[rows], expected_v[rows], rtol=1e-5, atol=1e-6)
    if bias:
        np.testing.assert_allclose(b[i], tb.detach().numpy()[i] - lr * tb.grad[i].item(), rtol=1e-5)


class TestFusedBPR(RecommenderContract):
    def make_model(self):
        return BPR(factors=8, iterations=60, learning_rate=0.1, regularization=0.001, optimizer="fused_sgd",
                   num_threads=1, random_state=0, device="cpu")


def test_fused_rejects_what_it_cannot_do():
    X, _ = checkerboard_holdout(20)
    with pytest.raises(ValueError, match="denoiser"):
        MF(optimizer="fused_sgd", denoise=Denoiser(), iterations=1, device="cpu").fit(X, show_progress=False)
    with pytest.raises(ValueError, match="no fused kernel"):
        LightGCN(optimizer="fused_sgd", iterations=1, device="cpu").fit(X, show_progress=False)
    with pytest.raises(ValueError, match="item features"):
        CML(optimizer="fused_sgd", iterations=1, device="cpu").fit(X, show_progress=False,
                                                                  item_features=np.ones((X.shape[1], 3)))


@pytest.mark.parametrize("cls,extra", [(BPR, {}), (CML, {"batch_size": 64})])
def test_fused_resume_matches_uninterrupted(tmp_path, cls, extra):
    """MF's and CML's kernels (CML: covariance steps every 64 samples) resume bit-identically."""
    from recfb.train import TrainingInterrupted
    X, _ = checkerboard_holdout(30)
    kw = dict(factors=8, iterations=4, optimizer="fused_sgd", num_threads=1, lr_schedule="cosine", device="cpu",
              **extra)
    full = cls(**kw).fit(X, show_progress=False)

    def stop(epoch, logs):
        if epoch == 2:
            raise TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        cls(**kw).fit(X, show_progress=False, checkpoint=tmp_path / "c.npz", callbacks=[stop])
    resumed = cls(**kw).fit(X, show_progress=False, checkpoint=tmp_path / "c.npz", resume=True)
    assert np.array_equal(full.item_factors, resumed.item_factors)
