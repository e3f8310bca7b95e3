"""NBPO inside the compiled MF kernel: each sample's update equals one SGD step of the
autograd loss (:func:`recfb.losses.nbpo_loss`, float64, with the kernel's per-row L2), the
flip factors train beside the model's, optimizer="auto" takes the kernel (and Adam where a
denoiser is asked for), and a resumed run ends where the uninterrupted one does."""
import numpy as np
import pytest
import torch

from recfb.denoise import TCE
from recfb.losses import NBPO, nbpo_loss
from recfb.models import MF
from recfb.testing import checkerboard_holdout
from recfb.train._fused import mf_sgd_epoch


def _reference_step(U, V, b, P, Q, u, i, negs, w, lr, reg, reg_f):
    """One SGD step of NBPO by autograd (float64), in place: the loss of the training step
    (``w * pos_part + neg_part``) plus ``0.5 * reg * ||row||^2`` for each row the sample
    touches (the kernel's L2 convention), both factorisations stepped from the old values."""
    t = {k: torch.tensor(a.astype(np.float64), requires_grad=True) for k, a in
         {"U": U, "V": V, "b": b, "P": P, "Q": Q}.items()}
    rows = torch.tensor([i]), torch.tensor(negs)[None, :]
    pu, fu = t["U"][u], t["P"][u]
    pos = (t["V"][rows[0]] @ pu) + t["b"][rows[0]]
    neg = (t["V"][rows[1]] @ pu) + t["b"][rows[1]]
    g_pos, g_neg = t["Q"][rows[0]] @ fu, t["Q"][rows[1]] @ fu
    pos_part, neg_part = nbpo_loss(pos, neg, g_pos, g_neg)
    loss = w * pos_part.sum() + neg_part.sum()
    data_loss = float(loss.detach())
    for table, r in (("U", [u]), ("V", [i, *negs]), ("P", [u]), ("Q", [i, *negs])):
        lam = reg if table in ("U", "V") else reg_f
        loss = loss + 0.5 * lam * t[table][r].pow(2).sum()
    loss.backward()
    for k, a in (("U", U), ("V", V), ("b", b), ("P", P), ("Q", Q)):
        a -= (lr * t[k].grad).numpy().astype(a.dtype)
    return data_loss


def test_nbpo_kernel_equals_the_autograd_sgd_step():
    rng = np.random.default_rng(11)
    n_users, n_items, d, df, n = 5, 9, 4, 3, 14
    U0 = rng.normal(0, 0.5, (n_users, d)).astype(np.float32)
    V0 = rng.normal(0, 0.5, (n_items, d)).astype(np.float32)
    b0 = rng.normal(0, 0.2, n_items).astype(np.float32)
    P0 = rng.normal(0, 0.7, (n_users, df)).astype(np.float32)
    Q0 = rng.normal(0, 0.7, (n_items, df)).astype(np.float32)
    users = np.sort(rng.integers(0, n_users, n))
    items = rng.integers(0, n_items, n)
    order = rng.permutation(n)
    # distinct negatives, none the positive (a repeated row would be stepped twice in sequence)
    negs = np.stack([rng.choice(np.setdiff1d(np.arange(n_items), [items[s]]), 3, replace=False) for s in order])
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    lr, reg, reg_f = 0.1, 0.02, 0.05
    U, V, b, P, Q = (a.copy() for a in (U0, V0, b0, P0, Q0))
    total = mf_sgd_epoch(U, V, b, users, items, order, negs, w, lr, reg, "nbpo", 1, nbpo=(P, Q, reg_f))
    Ur, Vr, br, Pr, Qr = (a.copy() for a in (U0, V0, b0, P0, Q0))
    ref_total = 0.0
    for p, s in enumerate(order):
        ref_total += _reference_step(Ur, Vr, br, Pr, Qr, users[s], items[s], negs[p], w[s], lr, reg, reg_f)
    for got, want in ((U, Ur), (V, Vr), (b, br), (P, Pr), (Q, Qr)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(P, P0) and not np.allclose(Q, Q0)  # the flip model did move
    # the returned loss is the samples' NBPO loss without L2 (as for BPR/BCE)
    assert total == pytest.approx(ref_total, rel=1e-5)


def test_nbpo_kernel_refuses_a_missing_or_extra_argument():
    a = np.zeros((2, 2), np.float32)
    args = (a, a.copy(), None, np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64),
            np.zeros((1, 1), np.int64), None, 0.1, 0.0)
    with pytest.raises(ValueError, match="nbpo"):
        mf_sgd_epoch(*args, "nbpo", 1)
    with pytest.raises(ValueError, match="nbpo"):
        mf_sgd_epoch(*args, "bce", 1, nbpo=(a, a, 0.0))


def test_auto_takes_the_kernel_for_nbpo_and_trains_its_flip_model():
    X, _ = checkerboard_holdout(30)
    obj = NBPO(flip_factors=4, seed=3)
    m = MF(loss=obj, factors=8, iterations=3, num_threads=1).fit(X, show_progress=False)
    assert m.optimizer_ == "fused_sgd"
    before = NBPO(flip_factors=4, seed=3)
    before.setup(X, torch.device("cpu"))
    assert not torch.equal(obj.user_flip.detach(), before.user_flip.detach())
    # the same seeded single-thread fit twice: identical
    again = MF(loss=NBPO(flip_factors=4, seed=3), factors=8, iterations=3, num_threads=1).fit(X, show_progress=False)
    assert np.array_equal(m.item_factors, again.item_factors)
    # with a denoiser NBPO keeps the autograd path; asking for the kernel names why not
    assert MF(loss="nbpo", denoise=TCE(), factors=8, iterations=1).fit(X, show_progress=False).optimizer_ == "adam"
    with pytest.raises(ValueError, match="NBPO"):
        MF(loss="nbpo", denoise=TCE(), optimizer="fused_sgd", iterations=1).fit(X, show_progress=False)


def test_nbpo_at_its_defaults_ranks_the_held_out_item():
    X, held = checkerboard_holdout(30)
    m = MF(loss="nbpo", factors=8, iterations=30).fit(X, show_progress=False)
    ids, _ = m.recommend(np.arange(30), X, N=1)
    assert m.optimizer_ == "fused_sgd"
    assert np.mean(ids[:, 0] == held) > 0.8  # chance: 1/15


def test_nbpo_on_the_kernel_resumes_where_the_uninterrupted_run_ends(interrupted_and_resumed):
    X, _ = checkerboard_holdout(30)
    full, resumed = interrupted_and_resumed(
        lambda: MF(loss=NBPO(flip_factors=4), factors=8, iterations=5, device="cpu", num_threads=1), X)
    assert resumed.optimizer_ == "fused_sgd"
    assert np.array_equal(full.item_factors, resumed.item_factors)
