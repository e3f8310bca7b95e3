"""recfb.losses.sequence: SeqBCE, GBCE, SampledSoftmax, FullSoftmax against their formulas
written out by brute force, and gBCE on MF's pair path."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfb.losses import BCE, GBCE, OBJECTIVES, FullSoftmax, SampledSoftmax, SeqBCE, gbce_beta, make_objective
from recfb.losses.base import Batch


def _scores(seed=0, B=7, n=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, generator=g, dtype=torch.float64) * 3, torch.randn(B, n, generator=g, dtype=torch.float64) * 3


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_gbce_matches_the_paper_formula_term_by_term():
    pos, neg = _scores()
    obj = GBCE(t=0.6, n_items=41)
    p, q = obj(pos, neg)
    alpha = 5 / 40
    beta = alpha * (0.6 * (1 - 1 / alpha) + 1 / alpha)
    assert obj.beta(5) == pytest.approx(beta) == gbce_beta(5, 41, 0.6)
    for b in range(pos.shape[0]):  # -log(sigmoid(s+)^beta) - sum_j log(1 - sigmoid(s_j))
        assert p[b].item() == pytest.approx(-beta * math.log(sigmoid(pos[b].item())), rel=1e-9)
        assert q[b].item() == pytest.approx(-sum(math.log(1 - sigmoid(s)) for s in neg[b].tolist()), rel=1e-9)


def test_gbce_reads_the_catalogue_at_setup_and_the_sample_size_per_call():
    pos, neg = _scores(n=3)
    obj = GBCE(t=1.0)
    with pytest.raises(RuntimeError, match="n_items"):
        obj(pos, neg)
    obj.setup(sp.csr_matrix((4, 31)), "cpu")
    torch.testing.assert_close(obj(pos, neg)[0], GBCE(t=1.0, n_items=31)(pos, neg)[0])
    assert obj.beta(3) == pytest.approx(3 / 30)  # t = 1: beta = alpha
    obj.setup(sp.csr_matrix((4, 11)), "cpu")  # a second fit on another catalogue
    assert obj.beta(3) == pytest.approx(3 / 10)
    given = GBCE(t=1.0, n_items=31)
    given.setup(sp.csr_matrix((4, 11)), "cpu")  # a given n_items stays
    assert given.beta(3) == pytest.approx(3 / 30)
    # t = 0: plain BCE
    torch.testing.assert_close(GBCE(t=0.0, n_items=31)(pos, neg)[0], BCE()(pos, neg)[0])
    torch.testing.assert_close(SeqBCE()(pos, neg)[1], BCE()(pos, neg)[1])


def test_negative_weights_apply_to_the_bce_family():
    pos, neg = _scores()
    w = torch.rand(neg.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    batch = Batch(users=None, items=None, negatives=None, index=None, neg_weights=w)
    for obj in (SeqBCE(), GBCE(t=0.5, n_items=20)):
        assert obj.weights_negatives
        want = (torch.nn.functional.softplus(neg) * w).sum(1)
        torch.testing.assert_close(obj(pos, neg, batch)[1], want)
        assert not torch.allclose(obj(pos, neg)[1], want)


def test_sampled_and_full_softmax_are_the_cross_entropy_of_the_positive():
    pos, neg = _scores()
    p, q = SampledSoftmax()(pos, neg)
    for b in range(pos.shape[0]):  # -log(exp(s+) / (exp(s+) + sum_j exp(s_j)))
        denom = math.exp(pos[b].item()) + sum(math.exp(s) for s in neg[b].tolist())
        assert p[b].item() == pytest.approx(-math.log(math.exp(pos[b].item()) / denom), rel=1e-9)
    assert torch.all(q == 0)
    # full softmax from logits == sampled softmax over every other item
    logits = torch.cat([neg, pos.unsqueeze(1)], 1)  # the positive is the last item
    targets = torch.full((pos.shape[0],), neg.shape[1])
    torch.testing.assert_close(FullSoftmax.from_logits(logits, targets), p)
    torch.testing.assert_close(FullSoftmax()(pos, neg)[0], p)


def test_parameters_and_names():
    with pytest.raises(TypeError, match="t must be a real number"):
        GBCE(t="0.5")
    with pytest.raises(ValueError, match=r"t == 1.5, must be in \[0, 1\]"):
        GBCE(t=1.5)
    with pytest.raises(ValueError, match="n_items == 1"):
        GBCE(n_items=1)
    with pytest.raises(TypeError, match="n_items"):
        GBCE(n_items=3.0)
    assert OBJECTIVES["gbce"] is GBCE and OBJECTIVES["sampled_softmax"] is SampledSoftmax
    assert isinstance(make_objective("gbce"), GBCE)
    assert {c.negatives for c in (SeqBCE, GBCE, SampledSoftmax, FullSoftmax)} == {"history", "uniform", "catalogue"}
    assert "t=0.25" in repr(GBCE(t=0.25))


def test_mf_trains_with_gbce_on_its_pairs():
    """gBCE is reusable by the pair path: MF(loss="gbce") learns the checkerboard."""
    from recfb.models import MF
    from recfb.testing import checkerboard_holdout

    X, held = checkerboard_holdout(30)
    m = MF(loss="gbce", factors=8, batch_size=256, iterations=40, learning_rate=0.05, num_negatives=4, biases=True,
           optimizer="adam", num_threads=1, random_state=0, device="cpu").fit(X, show_progress=False)
    ids, _ = m.recommend(np.arange(30), X, N=1)
    assert np.mean(ids[:, 0] == held) >= 0.9
