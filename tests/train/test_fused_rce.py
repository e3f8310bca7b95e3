"""R-CE inside the compiled MF kernel: one sample's update equals the autograd SGD step on
R-CE's weighted loss (weights held constant, as the training step holds them), and
optimizer="auto" takes the kernel for R-CE, T-CE and PLD (tests/train/test_fused_pld.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_fused import sgd_reference  # tests/train/test_fused.py (pytest puts its folder on sys.path)

from recfb.denoise import PLD, RCE, TCE, Denoiser
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
    rows = [i, 0, 4]
    expected_u, expected_v = sgd_reference(U, V, tu, tv, u, rows, lr, reg)
    last_loss, last_weight = np.full(3, np.nan, np.float32), np.ones(3, np.float32)
    got = mf_sgd_epoch(U, V, None, np.array([0, u, 0]), np.array([0, i, 0]), np.array([1]), negs,
                       np.array([1.0, w, 1.0], np.float32), lr, reg, objective, 1,
                       rce=(beta, rce_neg, last_loss, last_weight))
    assert got == pytest.approx(float(loss.detach()), rel=1e-5)
    np.testing.assert_allclose(U[u], expected_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V[rows], expected_v[rows], rtol=1e-5, atol=1e-6)
    assert last_loss[1] == pytest.approx(float(pos_loss.detach()), rel=1e-5) and np.isnan(last_loss[[0, 2]]).all()
    assert last_weight[1] == pytest.approx(float(wp), rel=1e-5)


def test_auto_takes_the_kernel_for_rce_tce_and_pld_and_fused_refuses_another_denoiser():
    X, _ = checkerboard_holdout(16)
    kw = dict(factors=8, iterations=3, device="cpu", num_threads=1)
    rce = MF(loss="bce", denoise=RCE(), **kw).fit(X, show_progress=False)
    assert rce.optimizer_ == "fused_sgd"
    scores = rce.denoise.noise_scores()
    assert scores.shape == (X.nnz,) and np.all((scores >= 0) & (scores <= 1))
    assert not np.allclose(scores, 0)  # the kernel recorded its weights
    assert MF(loss="bpr", denoise=RCE(), **kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"
    assert MF(loss="bce", denoise=TCE(), **kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"
    assert MF(loss="bpr", denoise=PLD(), **kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"
    with pytest.raises(ValueError, match=r"a denoiser \(Denoiser\) needs per-batch losses; the kernel implements "
                                         r"RCE, TCE, PLD only"):
        MF(loss="bpr", denoise=Denoiser(), optimizer="fused_sgd", **kw).fit(X, show_progress=False)
    assert MF(loss="bpr", denoise=Denoiser(), **kw).fit(X, show_progress=False).optimizer_ == "adam"


def test_rce_with_beta_zero_on_the_kernel_is_the_plain_loss():
    X, _ = checkerboard_holdout(16)
    kw = dict(factors=8, iterations=3, device="cpu", num_threads=1, loss="bce")
    plain = MF(**kw).fit(X, show_progress=False)
    rce0 = MF(denoise=RCE(beta=0.0), **kw).fit(X, show_progress=False)
    np.testing.assert_array_equal(plain.item_factors, rce0.item_factors)


def _np_pos_loss(U, V, users, items, negs, objective, by_score=False):
    s_pos = np.einsum("ij,ij->i", U[users], V[items]).astype(np.float64)
    if objective == "bce" or by_score:
        return np.logaddexp(0, -s_pos)
    s_neg = np.einsum("id,ikd->ik", U[users], V[negs]).astype(np.float64)
    return np.logaddexp(0, s_neg - s_pos[:, None]).mean(1)


@pytest.mark.parametrize("objective,by_score", [("bpr", False), ("bce", False), ("bpr", True)])
def test_tce_blocks_drop_the_largest_losses_at_the_warmup_rate(objective, by_score):
    """Reference: per block, the positive losses under the parameters the block starts from
    (numpy), the rate(step) largest set to weight 0 and the rest scaled m / (m - dropped), then
    the plain kernel on that block with those sample weights."""
    rng = np.random.default_rng(3)
    n_users, n_items, n, block = 6, 9, 20, 10
    U0 = rng.normal(size=(n_users, 4)).astype(np.float32)
    V0 = rng.normal(size=(n_items, 4)).astype(np.float32)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    order = rng.permutation(n)
    negs = rng.integers(0, n_items, (n, 2))
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    drop_rate, warmup, step0 = 0.4, 2, 1
    U, V = U0.copy(), V0.copy()
    last_loss, last_weight = np.full(n, np.nan, np.float32), np.ones(n, np.float32)
    mf_sgd_epoch(U, V, None, users, items, order, negs, w, 0.1, 0.01, objective, 1,
                 tce=(drop_rate, warmup, step0, block, last_loss, last_weight, by_score))
    Ur, Vr = U0.copy(), V0.copy()
    for k in range(2):
        sl = order[k * block:(k + 1) * block]
        losses = _np_pos_loss(Ur, Vr, users[sl], items[sl], negs[k * block:(k + 1) * block], objective, by_score)
        n_drop = int(min(drop_rate * (step0 + k) / warmup, drop_rate) * block)
        mask = np.full(block, block / (block - n_drop))
        mask[np.argsort(losses)[block - n_drop:]] = 0.0
        assert n_drop == (2 if k == 0 else 4)
        np.testing.assert_allclose(last_loss[sl], losses, rtol=1e-5)
        np.testing.assert_array_equal(last_weight[sl], mask.astype(np.float32))
        bw = np.zeros(n, np.float32)
        bw[sl] = w[sl] * mask
        mf_sgd_epoch(Ur, Vr, None, users, items, sl, negs[k * block:(k + 1) * block], bw, 0.1, 0.01, objective, 1)
    np.testing.assert_allclose(U, Ur, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V, Vr, rtol=1e-5, atol=1e-6)


def test_tce_at_defaults_takes_the_kernel_and_reaches_its_drop_rate():
    X, _ = checkerboard_holdout(30)
    m = MF(loss="bce", denoise=TCE(), iterations=5, batch_size=64, factors=8, num_threads=1, device="cpu").fit(
        X, show_progress=False)
    assert m.optimizer_ == "fused_sgd"
    steps = 5 * -(-X.nnz // 64)
    assert m.denoise.warmup_steps_ == round(0.3 * steps)
    # by the end every block dropped 20% of its positives: about a fifth of the clicks are flagged
    assert 0.1 < float(m.denoise.dropped_.float().mean()) < 0.3


def test_tce_criterion_auto_ranks_pairwise_positives_by_their_score():
    """criterion="auto": the objective's loss for BCE, softplus(-s_ui) for BPR (whose pair loss
    also counts the negative); "score"/"loss" force either; the kernel and the autograd step
    follow the same resolution."""
    from recfb.losses import BCE, BPR
    assert TCE().ranks_by_score_for(BPR()) and not TCE().ranks_by_score_for(BCE())
    assert TCE(criterion="score").ranks_by_score_for(BCE()) and not TCE(criterion="loss").ranks_by_score_for(BPR())
    with pytest.raises(ValueError, match="criterion"):
        TCE(criterion="pairs")
    t = TCE(drop_rate=0.5, warmup=1)
    t.setup(torch.zeros(4, dtype=torch.long), torch.arange(4), 1, 4, total_steps=2)
    t.bind(BPR())
    losses = torch.tensor([0.1, 5.0, 0.2, 0.3])  # pair losses: would drop interaction 1 and 3
    scores = torch.tensor([-3.0, 2.0, 1.0, -1.0])  # by score: the two lowest, 0 and 3
    w = t.weights(losses, scores, step=1, index=torch.arange(4))
    assert w.tolist() == [0.0, 2.0, 2.0, 0.0]
    np.testing.assert_allclose(t.noise_scores(), np.logaddexp(0, -scores.numpy()), rtol=1e-6)
    t.bind(BCE())
    assert t.weights(losses, scores, step=1, index=torch.arange(4)).tolist() == [2.0, 0.0, 2.0, 0.0]
    X, _ = checkerboard_holdout(16)
    kw = dict(factors=8, iterations=3, device="cpu", num_threads=1)
    score = MF(loss="bpr", denoise=TCE(criterion="score"), **kw).fit(X, show_progress=False)
    auto = MF(loss="bpr", denoise=TCE(), **kw).fit(X, show_progress=False)
    loss = MF(loss="bpr", denoise=TCE(criterion="loss"), **kw).fit(X, show_progress=False)
    assert auto.optimizer_ == "fused_sgd"
    np.testing.assert_array_equal(auto.item_factors, score.item_factors)
    assert not np.array_equal(auto.item_factors, loss.item_factors)
