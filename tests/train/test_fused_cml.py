"""CML's compiled per-sample SGD kernel against autograd on the same loss."""
import numpy as np
import pytest
import torch

from recfb.losses import covariance_penalty, warp_hinge_loss
from recfb.models import CML
from recfb.testing import RecommenderContract, checkerboard_holdout
from recfb.train._fused import _covariance_step, cml_sgd_epoch


def _unit_ball(x):
    return torch.renorm(x, 2, 0, 1.0)


@pytest.mark.parametrize("reg,weight", [(0.0, 1.0), (0.05, 2.5)])
def test_one_sample_update_equals_autograd_sgd_step(reg, weight):
    """A one-sample epoch is one SGD step on ``weight * warp_hinge + L2`` (the negatives' L2 / n),
    computed by autograd on the scores ``-||u - v||^2``, then the unit-ball projection."""
    rng = np.random.default_rng(3)
    # rows inside the unit ball, as training keeps them (the kernel projects the rows it touches)
    U = _unit_ball(torch.tensor(0.3 * rng.normal(size=(3, 4)), dtype=torch.float32)).numpy()
    V = _unit_ball(torch.tensor(0.3 * rng.normal(size=(7, 4)), dtype=torch.float32)).numpy()
    lr, margin, n_items = 0.1, 1.0, 7
    u, i, negs = 1, 2, np.array([[0, 4, 6]])
    tu, tv = torch.tensor(U, requires_grad=True), torch.tensor(V, requires_grad=True)
    pos = -(tu[u] - tv[i]).pow(2).sum().reshape(1)
    neg = -(tu[u] - tv[torch.tensor(negs[0])]).pow(2).sum(-1).reshape(1, -1)
    hinge = weight * warp_hinge_loss(pos, neg, margin, n_items).sum()
    assert hinge.item() > 0  # the sample violates the margin: the hinge is active
    l2 = 0.5 * reg * (tu[u].pow(2).sum() + tv[i].pow(2).sum() + tv[torch.tensor(negs[0])].pow(2).sum() / 3)
    (hinge + l2).backward()
    expected_u, expected_v = U.copy(), V.copy()
    expected_u[u] -= lr * tu.grad[u].numpy()
    rows = [i, 0, 4, 6]
    for r in rows:
        expected_v[r] -= lr * tv.grad[r].numpy()
    expected_u = _unit_ball(torch.tensor(expected_u)).numpy()
    expected_v = _unit_ball(torch.tensor(expected_v)).numpy()
    got = cml_sgd_epoch(U, V, np.array([u]), np.array([i]), np.array([0]), negs,
                        np.array([weight], np.float32), lr, reg, margin, n_items, 0.0, 8192, 1)
    assert got == pytest.approx(hinge.item(), rel=1e-5)
    np.testing.assert_allclose(U[u], expected_u[u], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V[rows], expected_v[rows], rtol=1e-5, atol=1e-6)


def test_no_violation_no_hinge_step():
    U = np.zeros((1, 2), np.float32)
    V = np.array([[0.1, 0.0], [0.9, 0.0], [0.0, -0.9]], np.float32)  # positive near, negatives far
    before = V.copy()
    got = cml_sgd_epoch(U, V, np.array([0]), np.array([0]), np.array([0]), np.array([[1, 2]]), None,
                        0.1, 0.0, 0.5, 3, 0.0, 8192, 1)
    assert got == 0.0 and np.array_equal(V, before)


def test_covariance_step_is_a_gradient_step_on_covariance_penalty():
    rng = np.random.default_rng(0)
    U = (0.2 * rng.normal(size=(5, 6))).astype(np.float32)
    V = (0.2 * rng.normal(size=(4, 6))).astype(np.float32)
    users, items = np.array([0, 3, 3, 1]), np.array([2, 2, 0, 1])  # repeated rows accumulate
    tu, tv = torch.tensor(U, requires_grad=True), torch.tensor(V, requires_grad=True)
    penalty = covariance_penalty(torch.cat([tu[torch.tensor(users)], tv[torch.tensor(items)]]))
    penalty.backward()
    step = 3.0
    expected_u = _unit_ball(torch.tensor(U) - step * tu.grad).numpy()
    expected_v = _unit_ball(torch.tensor(V) - step * tv.grad).numpy()
    got = _covariance_step(U, V, users, items, step)
    assert got == pytest.approx(penalty.item(), rel=1e-4)
    np.testing.assert_allclose(U, expected_u, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(V, expected_v, rtol=1e-4, atol=1e-7)


def test_auto_takes_the_kernel_and_features_keep_autograd():
    X, _ = checkerboard_holdout(20)
    assert CML(iterations=1, device="cpu").fit(X, show_progress=False).optimizer_ == "fused_sgd"
    F = np.random.default_rng(0).normal(size=(X.shape[1], 3))
    with_features = CML(iterations=1, device="cpu").fit(X, show_progress=False, item_features=F)
    assert with_features.optimizer_ == "adam"


def test_single_thread_is_deterministic_and_stays_in_the_unit_ball():
    """(Resuming from a checkpoint: test_fused.py::test_fused_resume_matches_uninterrupted.)"""
    X, _ = checkerboard_holdout(30)
    kw = dict(factors=8, iterations=4, num_threads=1, batch_size=64, device="cpu")
    full = CML(**kw).fit(X, show_progress=False)
    again = CML(**kw).fit(X, show_progress=False)
    assert np.array_equal(full.item_factors, again.item_factors)
    assert np.all(np.linalg.norm(full.item_factors, axis=1) <= 1 + 1e-5)
    assert np.all(np.linalg.norm(full.user_factors, axis=1) <= 1 + 1e-5)


class TestFusedCML(RecommenderContract):
    def make_model(self):
        return CML(factors=8, iterations=30, num_threads=1, random_state=0, device="cpu")


def test_the_covariance_step_runs_on_single_threaded_blas(monkeypatch):
    """The covariance step's matrix products run on one BLAS thread whatever the caller's limit
    (a 2-thread OpenBLAS alternating with the kernel's threads made a CML fit 3x slower on 2
    cores), and the caller's limit is back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import recfb.train._fused as fused

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen = []
    real = fused._covariance_step

    def spy(*args):
        seen.append(blas_threads())
        return real(*args)

    monkeypatch.setattr(fused, "_covariance_step", spy)
    rng = np.random.default_rng(0)
    U = (0.1 * rng.normal(size=(20, 8))).astype(np.float32)
    V = (0.1 * rng.normal(size=(30, 8))).astype(np.float32)
    users, items = rng.integers(0, 20, 200), rng.integers(0, 30, 200)
    negs = rng.integers(0, 30, (200, 3))
    with threadpool_limits(2, "blas"):
        outer = blas_threads()
        fused.cml_sgd_epoch(U, V, users, items, np.arange(200), negs, None, 0.1, 0.0, 1.0, 30, 1.0, 50)
        assert blas_threads() == outer
    assert len(seen) == 4 and all(s == {1} for s in seen)
