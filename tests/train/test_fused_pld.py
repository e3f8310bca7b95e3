"""PLD inside the compiled MF kernel: each sample's pool draw and update equal a reference
written from the method's definition (numpy losses of the pool under the parameters just
before the sample, Gumbel-max over -loss / T, then the plain kernel's update of the picked
positive), the warm-up epochs are the plain kernel, the loop's kernel calls cover the epoch
in bounded spans, and optimizer="auto" takes the kernel for PLD."""
import numpy as np
import pytest
import torch

from recfb.denoise import PLD
from recfb.models import MF
from recfb.models.mf import MFScorer
from recfb.sampling import UniformNegatives
from recfb.testing import checkerboard_holdout
from recfb.train._fused import mf_sgd_epoch


def _np_pool_loss(U, V, u, i, j, objective):
    s_pos, s_neg = float(U[u].astype(np.float64) @ V[i]), float(U[u].astype(np.float64) @ V[j])
    if objective == "bpr":
        return np.logaddexp(0, s_neg - s_pos)
    return np.logaddexp(0, -s_pos) + np.logaddexp(0, s_neg)


@pytest.mark.parametrize("objective", ["bpr", "bce"])
def test_pld_kernel_equals_the_per_sample_reference(objective):
    rng = np.random.default_rng(5)
    n_users, n_items, n, k, T = 4, 7, 12, 3, 0.3
    U0 = rng.normal(size=(n_users, 4)).astype(np.float32)
    V0 = rng.normal(size=(n_items, 4)).astype(np.float32)
    users = np.sort(rng.integers(0, n_users, n))  # CSR order: a user's interactions are contiguous
    items = rng.integers(0, n_items, n)
    order = rng.permutation(n)
    negs = rng.integers(0, n_items, (n, 2))
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    # each slot's pool: interaction indices of its own user
    pool = np.stack([rng.choice(np.flatnonzero(users == users[s]), k) for s in order])
    pool_neg = rng.integers(0, n_items, n)
    gumbel = rng.gumbel(size=(n, k)).astype(np.float32)
    U, V = U0.copy(), V0.copy()
    last_loss = np.full(n, np.nan, np.float32)
    mf_sgd_epoch(U, V, None, users, items, order, negs, w, 0.1, 0.01, objective, 1,
                 pld=(pool, pool_neg, gumbel, T, last_loss))
    Ur, Vr = U0.copy(), V0.copy()
    ref_loss = np.full(n, np.nan)
    picked = []
    for p, s in enumerate(order):
        u = users[s]
        losses = np.array([_np_pool_loss(Ur, Vr, u, items[c], pool_neg[p], objective) for c in pool[p]])
        ref_loss[pool[p]] = losses
        best = pool[p][np.argmax(gumbel[p] - losses / T)]
        picked.append(best)
        one = np.zeros(n, np.float32)
        one[best] = w[best]  # the picked interaction's own sample weight
        mf_sgd_epoch(Ur, Vr, None, users, items, np.array([best]), negs[p:p + 1], one, 0.1, 0.01, objective, 1)
    assert len(set(picked)) < n  # the draw did replace some positives (else the test shows nothing)
    np.testing.assert_allclose(U, Ur, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V, Vr, rtol=1e-5, atol=1e-6)
    seen = ~np.isnan(ref_loss)
    np.testing.assert_allclose(last_loss[seen], ref_loss[seen], rtol=1e-4)
    assert np.isnan(last_loss[~seen]).all()


def test_kernel_draws_come_from_the_users_own_positives_and_follow_the_warmup():
    X, _ = checkerboard_holdout(10)
    coo = X.tocoo()
    users, items = torch.as_tensor(coo.row.astype(np.int64)), torch.as_tensor(coo.col.astype(np.int64))
    pld = PLD(pool_size=4, warmup_epochs=2)
    pld.setup(users, items, X.shape[0], X.shape[1], total_steps=1)
    neg = UniformNegatives()
    neg.setup(X, "cpu")
    gen = torch.Generator().manual_seed(0)
    order = torch.randint(0, X.nnz, (5_000,), generator=gen)  # many slots: the Gumbel check below
    assert pld.kernel_inputs(users, order, neg, gen, epoch=1) is None  # warm-up: the plain kernel
    got = pld.kernel_inputs(users, order, neg, gen, epoch=2)
    assert got["pool"].shape == (5_000, 4) and got["gumbel"].shape == (5_000, 4) and got["negatives"].shape == (5_000,)
    assert torch.equal(users[got["pool"]], users[order].unsqueeze(1).expand(-1, 4))
    # Gumbel(0, 1): mean Euler's gamma, standard deviation pi / sqrt(6) (20,000 draws: SE 0.009)
    assert abs(float(got["gumbel"].mean()) - 0.5772) < 0.04 and abs(float(got["gumbel"].std()) - 1.2825) < 0.04


def test_auto_takes_the_kernel_for_pld_and_warmup_epochs_are_the_plain_kernel():
    X, _ = checkerboard_holdout(16)
    kw = dict(factors=8, iterations=3, device="cpu", num_threads=1, loss="bpr")
    plain = MF(**kw).fit(X, show_progress=False)
    warm = MF(denoise=PLD(warmup_epochs=3), **kw).fit(X, show_progress=False)
    assert warm.optimizer_ == "fused_sgd"
    np.testing.assert_array_equal(plain.item_factors, warm.item_factors)
    pld = MF(denoise=PLD(warmup_epochs=1), **kw).fit(X, show_progress=False)
    assert not np.array_equal(plain.item_factors, pld.item_factors)
    scores = pld.denoise.noise_scores()
    assert np.isfinite(scores).mean() > 0.9 and np.nanmin(scores) >= 0  # the kernel recorded pool losses


def test_loop_hands_the_kernel_bounded_spans_covering_the_epoch(monkeypatch):
    X, _ = checkerboard_holdout(16)
    calls = []
    original = MFScorer.fused_epoch

    def spy(self, users, items, order, negatives, *args, **kwargs):
        inputs = kwargs.get("inputs")
        calls.append((order.clone(), None if inputs is None else inputs["pool"].shape[0], negatives.shape[0]))
        return original(self, users, items, order, negatives, *args, **kwargs)

    monkeypatch.setattr(MFScorer, "fused_epoch", spy)
    pld = PLD(warmup_epochs=1)
    pld.kernel_span = 50
    MF(factors=4, iterations=2, device="cpu", num_threads=1, denoise=pld).fit(X, show_progress=False)
    spans = -(-X.nnz // 50)
    assert len(calls) == 2 * spans
    for epoch in range(2):
        part = calls[epoch * spans:(epoch + 1) * spans]
        assert all(len(o) <= 50 and n == len(o) for o, _, n in part)
        assert [p for _, p, _ in part] == ([None] * spans if epoch == 0 else [len(o) for o, _, _ in part])
        assert torch.equal(torch.sort(torch.cat([o for o, _, _ in part])).values, torch.arange(X.nnz))


def test_pld_on_the_kernel_resumes_where_the_uninterrupted_run_ends(interrupted_and_resumed):
    X, _ = checkerboard_holdout(30)
    full, resumed = interrupted_and_resumed(
        lambda: MF(denoise=PLD(warmup_epochs=1), factors=8, iterations=5, device="cpu", num_threads=1, loss="bpr"),
        X)
    assert resumed.optimizer_ == "fused_sgd"
    assert np.array_equal(full.item_factors, resumed.item_factors)
