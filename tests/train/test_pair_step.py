"""The one pair-training step (recfb.train.step): its loss against a hand computation, R-CE's
negative weights applied with BPR (or refused where the objective cannot apply them), PLD's
candidate losses, and the loop's use of a communicator (sharded epochs, averaged gradients)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recfb.denoise import RCE, Denoiser
from recfb.losses import BCE, BPR, RelMF
from recfb.models import MF
from recfb.sampling import NegativeSampler
from recfb.testing import checkerboard_holdout
from recfb.train import PairStep
from recfb.train.loop import Scorer


class TableScorer(Scorer):
    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def batch_scores(self, users, pos, neg):
        return self.table[users, pos], self.table[users.unsqueeze(1), neg]


class FixedNegatives(NegativeSampler):
    def __init__(self, items):
        self.items = torch.as_tensor(items)

    def sample(self, users, n, generator):
        return self.items[:n].repeat(users.numel(), 1)


TABLE = np.array([[2.0, 0.5, -1.0, 0.0, 0.3], [0.0, 0.0, 0.1, 1.0, -0.2]])
USERS, ITEMS = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 3])


def _step(objective, denoiser=None, weights=None):
    if denoiser is not None:
        denoiser.setup(USERS, ITEMS, 2, 5, total_steps=1)
    return PairStep(TableScorer(TABLE), objective, FixedNegatives([4, 2]), users=USERS, items=ITEMS,
                    num_negatives=2, weights=weights, denoiser=denoiser)


def test_bpr_with_rce_weights_each_pair_by_both_items_confidence():
    beta = 0.5
    step = _step(BPR(), RCE(beta=beta, negatives=True), weights=torch.tensor([1.0, 2.0, 0.5]))
    batch = step.sample(torch.arange(3), torch.Generator(), step=0)
    loss, pos_loss = step.loss(batch)
    # by hand, in numpy
    t = TABLE
    u, i = USERS.numpy(), ITEMS.numpy()
    pos = t[u, i]
    neg = t[u[:, None], np.array([[4, 2]] * 3)]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    w_neg = sig(-neg) ** beta
    pair = np.log1p(np.exp(-(pos[:, None] - neg)))
    per_pos = (w_neg * pair).mean(1)
    w_pos = sig(pos) ** beta * np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(pos_loss.numpy(), per_pos, rtol=1e-6)
    assert float(loss.detach()) == pytest.approx(float((w_pos * per_pos).mean()), rel=1e-6)


def test_bpr_with_rce_differs_from_bpr_with_positive_weights_only():
    a = _step(BPR(), RCE(beta=1.0, negatives=True))
    b = _step(BPR(), RCE(beta=1.0, negatives=False))
    la, _ = a.loss(a.sample(torch.arange(3), torch.Generator(), 0))
    lb, _ = b.loss(b.sample(torch.arange(3), torch.Generator(), 0))
    assert float(la) < float(lb)  # every negative weight is < 1


def test_bce_applies_negative_weights_to_each_negative_term():
    step = _step(BCE(), RCE(beta=1.0))  # "auto": BCE weights its negatives
    batch = step.sample(torch.arange(3), torch.Generator(), 0)
    loss, _ = step.loss(batch)
    pos, neg = step.scorer.batch_scores(batch.users, batch.items, batch.negatives)
    w_pos = torch.sigmoid(pos).detach()
    expected = (w_pos * F.softplus(-pos)).mean() + (torch.sigmoid(-neg).detach() * F.softplus(neg)).sum(1).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_negative_weights_are_refused_where_the_objective_cannot_apply_them():
    with pytest.raises(ValueError, match=r"RCE reweights the sampled negatives.*'relmf'.*negatives=False"):
        _step(RelMF(), RCE(negatives=True))
    _step(RelMF(), RCE(negatives=False))  # positives only: fine
    assert not _step(RelMF(), RCE()).weights_negatives  # "auto": Rel-MF cannot, so positives only
    assert not _step(BPR(), RCE()).weights_negatives  # "auto": pairwise, positives only
    assert _step(BCE(), RCE()).weights_negatives  # "auto": the paper's pointwise setting
    X, _ = checkerboard_holdout(12)
    with pytest.raises(ValueError, match="reweights the sampled negatives"):
        MF(factors=4, iterations=1, loss="relmf", denoise=RCE(negatives=True), device="cpu").fit(X, show_progress=False)
    with pytest.raises(ValueError, match="reweights the sampled negatives"):
        MF(factors=4, iterations=1, loss="nbpo", denoise=RCE(negatives=True), device="cpu").fit(X, show_progress=False)


def test_mf_bpr_with_rce_trains_with_the_negative_weights():
    X, _ = checkerboard_holdout(20)
    kw = dict(factors=8, iterations=3, loss="bpr", device="cpu")
    with_neg = MF(**kw, denoise=RCE(beta=1.0, negatives=True)).fit(X, show_progress=False)
    pos_only = MF(**kw, denoise=RCE(beta=1.0, negatives=False)).fit(X, show_progress=False)
    assert not np.allclose(with_neg.item_factors, pos_only.item_factors)


def test_candidate_losses_are_the_objectives_loss_of_each_candidate():
    step = _step(BPR())
    cand = torch.tensor([[0, 1, 2], [3, 3, 0]])
    got = step.candidate_losses(torch.tensor([0, 1]), cand, torch.Generator(), torch.zeros(2, 3, dtype=torch.long), 0)
    expected = np.log1p(np.exp(TABLE[[0, 1], [4, 4]][:, None] - TABLE[np.array([[0], [1]]), cand.numpy()]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


class HalfComm:
    """A stand-in communicator of rank 0 in a world of 2: the loop must train only on its
    shard of each epoch's permutation and average gradients through it."""
    rank, world_size, is_main, enabled = 0, 2, True, True

    def __init__(self):
        self.reduced = 0

    def shard(self, order):
        return order[0::2]

    def all_reduce_mean_(self, tensors):
        self.reduced += 1

    def broadcast(self, obj, src=0):
        return obj


class Recorder(Denoiser):
    def __init__(self):
        self.seen = []

    def weights(self, losses, scores, step, index):
        self.seen.append(index.clone())
        return torch.ones_like(losses)


def test_the_loop_trains_its_shard_of_the_seeded_permutation(monkeypatch):
    import recfb.models._embedding as emb
    X, _ = checkerboard_holdout(20)
    comm, rec = HalfComm(), Recorder()
    monkeypatch.setattr(emb, "get_comm", lambda distributed: comm if comm is not None else _one_process())
    m = MF(factors=4, iterations=2, batch_size=16, denoise=rec, device="cpu").fit(X, show_progress=False,
                                                                              distributed=True)
    assert m.optimizer_ == "adam"  # the fused kernel is single-process
    seen = torch.cat(rec.seen)
    assert seen.numel() == 2 * ((X.nnz + 1) // 2)  # half of each epoch
    gen = torch.Generator().manual_seed(0)
    first = torch.randperm(X.nnz, generator=gen)[0::2]
    assert torch.equal(seen[:first.numel()], first)  # the even positions of epoch 1's permutation
    assert comm.reduced >= 2 * -(-first.numel() // 16)  # every step's gradients (+ the epoch losses)


def _one_process():
    from recfb.distributed import Comm
    return Comm()


class StrideComm(HalfComm):
    """Rank ``rank`` of 2 with the real stride shard (padded by wrapping)."""

    def __init__(self, rank):
        super().__init__()
        self.rank, self.is_main = rank, rank == 0

    def shard(self, order):
        return np.resize(order, -(-order.size // 2) * 2)[self.rank::2]


def _record_batches(monkeypatch, comm, batch_size):
    import recfb.models._embedding as emb
    from recfb.train import step as step_mod
    seen = []
    original = step_mod.PairStep.loss

    def loss(self, batch):
        seen.append((batch.index.clone(), batch.negatives.clone()))
        return original(self, batch)
    monkeypatch.setattr(step_mod.PairStep, "loss", loss)
    monkeypatch.setattr(emb, "get_comm", lambda distributed: comm if comm is not None else _one_process())
    X, _ = checkerboard_holdout(20)
    MF(factors=4, iterations=1, batch_size=batch_size, optimizer="adam", device="cpu").fit(
        X, show_progress=False, distributed=comm is not None)
    monkeypatch.undo()
    return seen


def test_each_rank_gets_its_rows_of_one_process_global_batch(monkeypatch):
    """Two ranks at batch b see exactly one process's batches of 2b: the interactions and the
    negatives, split by the stride (the ranks' negatives differ, and the shared generator stays
    in step)."""
    single = _record_batches(monkeypatch, None, 32)
    ranks = [_record_batches(monkeypatch, StrideComm(r), 16) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for j, (idx, negs) in enumerate(single):
        for r in (0, 1):
            ridx, rnegs = ranks[r][j]
            n = ridx.numel()
            assert torch.equal(ridx, idx[r::2][:n])
            assert torch.equal(rnegs, negs[r::2][:n])
    assert not torch.equal(ranks[0][0][1], ranks[1][0][1])
