"""Denoisers (T-CE, R-CE, PLD), the NBPO objective and the noisy-label protocols, each
checked against an independent computation."""
import itertools

import numpy as np
import pytest
import torch

from recfb.data import Interactions
from recfb.datasets import inject_noise, make_world, natural_noise_split
from recfb.denoise import PLD, RCE, TCE, Denoiser
from recfb.losses import BCE, BPR, NBPO, nbpo_loss
from recfb.models import MF, LightGCN
from recfb.sampling import NegativeSampler
from recfb.testing import checkerboard_holdout
from recfb.train import PairStep
from recfb.utils.errors import DataError


def small(**kw):
    # the autograd loop, which every denoiser runs on (optimizer="auto" would put the plain
    # losses on the fused kernel and so compare two different update rules)
    params = dict(factors=8, iterations=6, batch_size=128, learning_rate=0.05, random_state=0, device="cpu",
                  optimizer="adam", lr_schedule=None, regularization=1e-4)
    params.update(kw)
    return MF(**params)


# ---------------------------------------------------------------------- T-CE
def test_tce_schedule_reaches_drop_rate_within_the_run():
    d = TCE(drop_rate=0.2, warmup=0.5)
    d.setup(torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long), 1, 1, total_steps=100)
    assert d.warmup_steps_ == 50
    assert [d.rate(s) for s in (0, 25, 50, 99)] == pytest.approx([0.0, 0.1, 0.2, 0.2])
    d = TCE(drop_rate=0.2, warmup=1000)
    with pytest.warns(UserWarning, match="ends at 0.020"):
        d.setup(torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long), 1, 1, total_steps=100)


def test_tce_drops_the_largest_loss_fraction_of_positives():
    d = TCE(drop_rate=0.3, warmup=1)
    n = 20
    d.setup(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), 1, 1, total_steps=10)
    losses = torch.tensor(np.random.default_rng(0).permutation(n), dtype=torch.float32)
    w = d.weights(losses, torch.zeros(n), step=5, index=torch.arange(n))
    n_drop = int(0.3 * n)
    dropped = set(np.argsort(-losses.numpy())[:n_drop])
    assert set(np.flatnonzero(w.numpy() == 0)) == dropped
    kept = w[w > 0]
    assert torch.allclose(kept, torch.full_like(kept, n / (n - n_drop)))  # mean over the kept positives
    assert (w * losses).sum() / n == pytest.approx(float(losses[w > 0].mean()))
    assert d.dropped_.sum() == n_drop
    np.testing.assert_array_equal(d.noise_scores(), losses.numpy())


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.2", True])
def test_tce_bad_drop_rate(bad):
    with pytest.raises(ValueError, match="drop_rate"):
        TCE(drop_rate=bad)


@pytest.mark.parametrize("bad", [0, -3, 1.5, 0.0, "1"])
def test_tce_bad_warmup(bad):
    with pytest.raises(ValueError, match="warmup"):
        TCE(warmup=bad)


# ---------------------------------------------------------------------- R-CE
def test_rce_weights_match_the_paper_formula():
    d = RCE(beta=0.4)
    d.setup(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long), 1, 1, total_steps=1)
    s = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    w = d.weights(torch.zeros(5), s, 0, torch.arange(5))
    np.testing.assert_allclose(w.numpy(), (1 / (1 + np.exp(-s.numpy()))) ** 0.4, rtol=1e-6)
    neg = torch.tensor([[-1.0, 2.0]])
    np.testing.assert_allclose(d.negative_weights(neg, 0).numpy(), (1 - 1 / (1 + np.exp(-neg.numpy()))) ** 0.4,
                               rtol=1e-6)
    assert RCE(beta=0.4, negatives=False).negative_weights(neg, 0) is None


def test_rce_beta_zero_is_the_plain_loss():
    X, _ = checkerboard_holdout(30)
    plain = small(loss="bce", num_negatives=2).fit(X, show_progress=False)
    rce0 = small(loss="bce", num_negatives=2, denoise=RCE(beta=0.0)).fit(X, show_progress=False)
    np.testing.assert_allclose(plain.item_factors, rce0.item_factors, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, "1", None])
def test_rce_bad_beta(bad):
    with pytest.raises(ValueError, match="beta"):
        RCE(beta=bad)


# ---------------------------------------------------------------------- PLD
class TableScorer(torch.nn.Module):
    """Fixed scores s[u, i] from a table."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def batch_scores(self, users, pos, neg):
        return self.table[users, pos], self.table[users.unsqueeze(1), neg]


class FixedNegative(NegativeSampler):
    def __init__(self, item):
        self.item = item

    def sample(self, users, n, generator):
        return torch.full((users.numel(), n), self.item, dtype=torch.long)


def test_pld_resampling_matches_the_softmax_over_pools():
    # user 0 has items 0, 1, 2 (interaction indices 0..2), user 1 has item 3 (index 3); item 4 is the negative
    table = np.array([[2.0, 0.5, -1.0, 0.0, 0.3], [0.0, 0.0, 0.0, 1.0, -0.2]])
    users, items = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 3])
    pld = PLD(pool_size=2, temperature=0.7, warmup_epochs=0)
    pld.setup(users, items, 2, 5, total_steps=1)
    step = PairStep(TableScorer(table), BPR(), FixedNegative(4), users=users, items=items)
    gen = torch.Generator().manual_seed(0)
    n = 60_000
    idx = torch.tensor([0, 3]).repeat(n // 2)
    out = pld.resample(idx, step, gen, epoch=0, step_number=0)
    u0 = out[0::2].numpy()
    assert np.all(out[1::2].numpy() == 3)  # a slot only ever gets its own user's interactions
    # independent computation: enumerate the 3^2 equally likely pools, softmax(-loss / T) within each
    loss = np.log1p(np.exp(table[0, 4] - table[0, :3]))
    expected = np.zeros(3)
    for pool in itertools.product(range(3), repeat=2):
        logits = -loss[list(pool)] / 0.7
        p = np.exp(logits - logits.max())
        p /= p.sum()
        for slot, item in enumerate(pool):
            expected[item] += p[slot] / 9
    got = np.bincount(u0, minlength=3) / u0.size
    np.testing.assert_allclose(got, expected, atol=0.01)
    np.testing.assert_allclose(pld.noise_scores()[:3], loss, rtol=1e-5)


def test_pld_warmup_epochs_leave_the_order_alone():
    pld = PLD(warmup_epochs=2)
    pld.setup(torch.tensor([0, 0]), torch.tensor([0, 1]), 1, 3, total_steps=1)
    idx = torch.tensor([1, 0])
    assert torch.equal(pld.resample(idx, None, None, epoch=1, step_number=0), idx)


@pytest.mark.parametrize("kw,match", [({"pool_size": 0}, "pool_size"), ({"pool_size": 2.0}, "pool_size"),
                                      ({"temperature": 0}, "temperature"), ({"temperature": -1.0}, "temperature"),
                                      ({"warmup_epochs": -1}, "warmup_epochs")])
def test_pld_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        PLD(**kw)


# ---------------------------------------------------------------------- NBPO
def test_nbpo_gradients_equal_the_authors_closed_form():
    g = torch.Generator().manual_seed(0)
    R_p, R_n = torch.randn(6, generator=g, requires_grad=True), torch.randn(6, 4, generator=g, requires_grad=True)
    G_p, G_n = torch.randn(6, generator=g, requires_grad=True), torch.randn(6, 4, generator=g, requires_grad=True)
    pos, neg = nbpo_loss(R_p, R_n, G_p, G_n)
    (pos.sum() + neg.sum()).backward()
    sig = lambda x: 1 / (1 + np.exp(-x.detach().numpy()))  # noqa: E731
    rp, phip, rn, phin = sig(R_p), sig(G_p), sig(R_n), sig(G_n)
    # the authors' gradient-ascent directions (NBPO, "surrogate gradient"); we minimise, so negate
    np.testing.assert_allclose(-R_p.grad.numpy(), (1 - phip) * (1 - rp), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(-G_p.grad.numpy(), -phip * rp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(-R_n.grad.numpy(), phin * (1 - rn) - rn, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(-G_n.grad.numpy(), (1 - phin) * rn, rtol=1e-5, atol=1e-7)


def test_nbpo_without_flips_trains_like_pointwise_log_loss():
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(5, generator=g, requires_grad=True), torch.randn(5, 3, generator=g, requires_grad=True)
    p, n = nbpo_loss(pos, neg, torch.full((5,), -40.0), torch.full((5, 3), -40.0))  # phi ~ 0: no flips
    (p.sum() + n.sum()).backward()
    got = pos.grad.clone(), neg.grad.clone()
    pos.grad = neg.grad = None
    bp, bn = BCE()(pos, neg)
    (bp.sum() + bn.sum()).backward()
    torch.testing.assert_close(got[0], pos.grad)
    torch.testing.assert_close(got[1], neg.grad)


def test_nbpo_initial_flip_probability_and_training():
    X, held = checkerboard_holdout(30)
    obj = NBPO(flip_factors=16, init_flip=0.01)
    obj.setup(X, "cpu")
    phi = obj.flip_probability(torch.arange(30), torch.arange(30)).detach()
    assert 0.002 < float(phi.mean()) < 0.05
    # the autograd loop at nearly no model L2: the authors' flip L2 (the default's 0.3 pulls every
    # unvoted score to one level, which this tiny dense problem then fits exactly)
    m = small(loss=NBPO(flip_regularization=1e-3), num_negatives=4, negatives="verified",
              iterations=30).fit(X, show_progress=False)
    ids, _ = m.recommend(np.arange(30), X, N=1)
    assert np.mean(ids[:, 0] == held) > 0.6  # chance: 1/15


@pytest.mark.parametrize("kw,match", [({"flip_factors": 0}, "flip_factors"), ({"flip_regularization": -1.0}, "flip_reg"),
                                      ({"init_flip": 1.0}, "init_flip")])
def test_nbpo_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        NBPO(**kw)


# ---------------------------------------------------------------------- models and the loop
@pytest.mark.parametrize("make", [
    lambda: small(loss="bce", num_negatives=3, denoise=TCE(0.2, warmup=0.3)),
    lambda: small(loss="bce", num_negatives=3, denoise=RCE(0.25)),
    lambda: small(loss="bpr", denoise=PLD(warmup_epochs=1)),
    lambda: LightGCN(factors=8, iterations=4, batch_size=256, learning_rate=0.01, num_layers=2, loss="bce",
                     num_negatives=2, denoise=TCE(0.2), device="cpu"),
    lambda: LightGCN(factors=8, iterations=4, batch_size=256, learning_rate=0.01, num_layers=2,
                     denoise=PLD(warmup_epochs=1), device="cpu"),
])
def test_denoised_models_learn_the_checkerboard(make):
    X, held = checkerboard_holdout(30)
    m = make().fit(X, show_progress=False)
    ids, _ = m.recommend(np.arange(30), X, N=1)
    assert np.mean(ids[:, 0] == held) > 0.8


@pytest.mark.parametrize("denoise", [lambda: TCE(0.3, warmup=0.5), lambda: PLD(warmup_epochs=1)])
def test_resume_with_a_denoiser_ends_where_uninterrupted_run_ends(interrupted_and_resumed, denoise):
    X, _ = checkerboard_holdout(30)
    loss = "bpr" if isinstance(denoise(), PLD) else "bce"
    full, resumed = interrupted_and_resumed(lambda: small(loss=loss, denoise=denoise()), X)
    assert np.array_equal(full.item_factors, resumed.item_factors)


def test_nbpo_resume_restores_the_flip_model(interrupted_and_resumed):
    X, _ = checkerboard_holdout(30)
    kw = dict(loss="nbpo", num_negatives=2)
    full, resumed = interrupted_and_resumed(lambda: small(**kw), X, at_epoch=2)
    assert np.array_equal(full.item_factors, resumed.item_factors)


def test_denoise_must_be_a_denoiser_and_fused_refuses_it():
    X, _ = checkerboard_holdout(20)
    with pytest.raises(TypeError, match="denoise"):
        small(denoise="tce").fit(X, show_progress=False)
    with pytest.raises(ValueError, match="denoiser"):  # a denoiser the kernel does not implement
        small(optimizer="fused_sgd", denoise=Denoiser()).fit(X, show_progress=False)
    # PLD, T-CE and R-CE run inside the kernel (tests/train/test_fused_pld.py, test_fused_rce.py)
    assert small(optimizer="fused_sgd", denoise=PLD()).fit(X, show_progress=False).optimizer_ == "fused_sgd"


def test_tce_flags_injected_noise_better_than_chance():
    world = make_world(n_users=300, n_items=200, density=0.06, noise_rate=0.2, seed=0)
    X = world.clicks.matrix.tocsr()
    order = np.lexsort((world.clicks.items, world.clicks.users))  # CSR order of the interactions
    noise = world.noise_mask[order]
    tce = TCE(drop_rate=0.2, warmup=0.3)
    small(loss="bce", num_negatives=4, iterations=30, batch_size=512, learning_rate=0.01, denoise=tce).fit(
        X, show_progress=False)
    scores = tce.noise_scores()
    # AUC of the loss as a noise detector: P(score of a noisy pair > score of a clean one)
    ranks = scores.argsort().argsort()
    auc = (ranks[noise].mean() - (noise.sum() - 1) / 2) / (~noise).sum()
    assert auc > 0.65
    precision = noise[tce.dropped_.numpy()].mean()
    assert precision > 1.5 * noise.mean()


# ---------------------------------------------------------------------- protocols
def rated(seed=0, n_users=50, n_items=40):
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, size=600, replace=False)
    return Interactions.from_arrays(cells // n_items, cells % n_items, values=rng.integers(1, 6, size=600))


def keys(part):
    return set((part.users.astype(np.int64) * part.n_items + part.items).tolist())


def test_natural_noise_split_is_disjoint_and_clean():
    data = rated()
    s = natural_noise_split(data, clean_threshold=4, seed=3)
    assert not keys(s.train) & keys(s.test) and not keys(s.train) & keys(s.valid) and not keys(s.valid) & keys(s.test)
    assert s.test.values.min() >= 4 and s.valid.values.min() >= 4
    assert s.train.values.min() < 4  # the noise stays in training
    dropped = len(data) - len(s.train) - len(s.valid) - len(s.test)
    assert dropped == int((data.values < 4).sum()) - int((s.train.values < 4).sum())


def test_inject_noise_adds_unobserved_pairs_per_user():
    data = rated(1)
    s = natural_noise_split(data, seed=0)
    noisy, mask = inject_noise(s.train, 0.3, exclude=(s.valid, s.test), seed=5)
    assert len(noisy) == len(s.train) + mask.sum() and not mask[:len(s.train)].any()
    injected = noisy.subset(mask)
    assert not keys(injected) & (keys(s.train) | keys(s.valid) | keys(s.test))
    assert len(keys(injected)) == len(injected)  # no duplicates
    per_user = np.bincount(s.train.users, minlength=data.n_users)
    np.testing.assert_array_equal(np.bincount(injected.users, minlength=data.n_users),
                                  np.floor(0.3 * per_user + 0.5).astype(int))
    again, _ = inject_noise(s.train, 0.3, exclude=(s.valid, s.test), seed=5)
    np.testing.assert_array_equal(again.items, noisy.items)


@pytest.mark.parametrize("rate", [1.0, -0.1, "0.1"])
def test_inject_noise_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        inject_noise(rated(), rate)


def test_natural_noise_needs_ratings():
    data = Interactions.from_arrays([0, 1, 1], [1, 0, 2])
    with pytest.raises(DataError, match="ratings"):
        natural_noise_split(data)


def test_inject_noise_full_user():
    data = Interactions.from_arrays([0, 0, 1], [0, 1, 0])
    with pytest.raises(DataError, match="user 0 needs 1 injected items but has only 0"):
        inject_noise(data, 0.5)
