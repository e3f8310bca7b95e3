"""SASRec / gSASRec / BERT4Rec: sequences, losses, next-item learning, histories, persistence."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfb.data import Interactions, concatenate
from recfb.data.split import leave_one_out
from recfb.evaluation import ranking_metrics, sampled_ranking_metrics
from recfb.models import BERT4Rec, SASRec, gSASRec, load
from recfb.models.sequential import gbce_beta, pack_sequences, pad_left
from recfb.train import TrainingInterrupted
from recfb.utils.errors import DataError

N_ITEMS = 12


def cyclic(n_users=60, seed=0, min_len=5, max_len=12):
    """Each user walks i -> i + 1 (mod N_ITEMS) from a random start: the next item is a function
    of the last one. Rows are in time order (file order)."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):  # building test data, not a hot path
        n = rng.integers(min_len, max_len + 1)
        start = rng.integers(N_ITEMS)
        users += [u] * n
        items += [(start + k) % N_ITEMS for k in range(n)]
    return Interactions.from_arrays(np.array(users), np.array(items), item_ids=np.arange(N_ITEMS))


def small(cls=SASRec, **kw):
    params = dict(factors=16, iterations=40, batch_size=32, learning_rate=5e-3, max_len=8, dropout=0.0,
                  random_state=0, device="cpu")
    params.update(kw)
    return cls(**params)


def test_pad_left_matches_a_loop():
    seqs = [np.array([3, 1, 4, 1, 5]), np.array([], np.int64), np.array([9, 2]), np.arange(10)]
    indptr, items = pack_sequences(seqs)
    rows = np.array([0, 1, 2, 3, 0])
    for L, dl, df in [(3, 0, 0), (6, 1, 0), (4, 0, 1), (1, 1, 1)]:
        got = pad_left(indptr, items, rows, L, drop_last=dl, drop_first=df)
        for r, row in enumerate(rows):
            s = seqs[row][df:len(seqs[row]) - dl] + 1
            s = s[-L:]
            want = np.r_[np.zeros(L - len(s), np.int64), s]
            np.testing.assert_array_equal(got[r], want)


def test_gbce_beta_closed_form():
    assert gbce_beta(10, 101, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    assert gbce_beta(10, 101, 1.0) == pytest.approx(0.1)  # t = 1: beta = alpha
    alpha = 256 / 23714
    assert gbce_beta(256, 23715, 0.75) == pytest.approx(alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha))


@pytest.mark.parametrize("make", [
    lambda: small(loss="bce", iterations=150),
    lambda: small(loss="gbce", num_negatives=4, gbce_t=0.75),
    lambda: small(gSASRec, num_negatives=4),
    lambda: small(loss="sampled_softmax", num_negatives=4),
    lambda: small(loss="softmax"),
    lambda: small(BERT4Rec, num_heads=2, mask_prob=0.3, iterations=100),
])
def test_learns_the_next_item(make):
    data = cyclic()
    m = make().fit(data, show_progress=False)
    H = m.history_matrix()
    last = np.array([s[-1] for s in data.sequences("row")])
    ids, _ = m.recommend(np.arange(data.n_users), H, N=1, filter_already_liked_items=False)
    assert np.mean(ids[:, 0] == (last + 1) % N_ITEMS) > 0.9


def test_leave_one_out_evaluation_full_and_sampled():
    data = cyclic(n_users=80, seed=1)
    train, valid, test = leave_one_out(data, by="row")
    m = small(loss="softmax", patience=5).fit(train, valid_items=valid, show_progress=False)
    assert m.best_epoch_ is not None and all("valid" in h for h in m.history_)
    # no leakage: the model trained on exactly the train sequences (validation and test rows never entered)
    train_seqs = train.sequences("row")
    np.testing.assert_array_equal(m.hist_items_, np.concatenate(train_seqs))
    m.set_histories(concatenate([train, valid]))
    seqs = data.sequences("row")
    np.testing.assert_array_equal(m.hist_items_, np.concatenate([s[:-1] for s in seqs]))  # all but the test item
    H = m.history_matrix()
    T = test.matrix
    full = ranking_metrics(m, H, T, k=10, filter_already_liked_items=False)
    assert full["hit_rate@10"] > 0.9 and full["ndcg@10"] > 0.6
    sampled = sampled_ranking_metrics(m, H, T, n_negatives=5, k=(1, 5), seed=0)
    assert sampled["hit_rate@5"] > 0.9


def test_histories_given_at_call_time_for_unseen_users():
    m = small(loss="softmax").fit(cyclic(), show_progress=False)
    empty = sp.csr_matrix((2, N_ITEMS), dtype=np.float32)
    ids, _ = m.recommend([0, 1], empty, N=1, histories=[[3, 4, 5], [10, 11]], filter_already_liked_items=False)
    np.testing.assert_array_equal(ids[:, 0], [6, 0])
    with pytest.raises(DataError, match="outside the vocabulary"):
        m.recommend([0], empty[:1], N=1, histories=[[3, N_ITEMS]])
    with pytest.raises(DataError, match="2 sequences for 1 users"):
        m.recommend([0], empty[:1], N=1, histories=[[1], [2]])


def test_exported_vectors_reproduce_the_scores():
    for m in (small(iterations=3).fit(cyclic(), show_progress=False),
              small(BERT4Rec, iterations=3, num_heads=2).fit(cyclic(), show_progress=False)):
        H = m.history_matrix()
        np.testing.assert_allclose(m.user_factors[:10] @ m.item_factors.T, m.score(np.arange(10), H[:10]),
                                   rtol=1e-4, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    m = small(iterations=3).fit(cyclic(), show_progress=False)
    H = m.history_matrix()
    back = load(m.save(tmp_path / "s.npz"))
    np.testing.assert_allclose(back.score(np.arange(5), H[:5]), m.score(np.arange(5), H[:5]), rtol=1e-6)


def test_resume_ends_where_uninterrupted_run_ends(tmp_path):
    data = cyclic()
    full = small(iterations=6, dropout=0.2).fit(data, show_progress=False)

    def crash(epoch, logs):
        if epoch == 3:
            raise TrainingInterrupted("crash")

    ckpt = tmp_path / "c.npz"
    with pytest.raises(TrainingInterrupted):
        small(iterations=6, dropout=0.2).fit(data, show_progress=False, checkpoint=ckpt, callbacks=[crash])
    resumed = small(iterations=6, dropout=0.2).fit(data, show_progress=False, checkpoint=ckpt, resume=True)
    np.testing.assert_array_equal(full.item_factors, resumed.item_factors)


def test_scores_do_not_depend_on_batch_padding():
    data = cyclic(min_len=3, max_len=30)
    m = small(iterations=2, max_len=20).fit(data, show_progress=False)
    H = m.history_matrix()
    together = m.score(np.arange(data.n_users), H)
    alone = np.vstack([m.score([u], H[u]) for u in range(5)])  # each user in a batch of one
    np.testing.assert_allclose(alone, together[:5], rtol=1e-5, atol=1e-5)


def test_same_seed_same_model():
    a = small(iterations=2, dropout=0.2).fit(cyclic(), show_progress=False)
    b = small(iterations=2, dropout=0.2).fit(cyclic(), show_progress=False)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


@pytest.mark.parametrize("kw,err,match", [
    ({"max_len": 0}, ValueError, "max_len"), ({"loss": "hinge"}, ValueError, "loss"),
    ({"dropout": 1.0}, ValueError, "dropout"), ({"factors": 10, "num_heads": 3}, ValueError, "divisible"),
    ({"gbce_t": 1.5}, ValueError, "gbce_t"),
])
def test_bad_parameters(kw, err, match):
    with pytest.raises(err, match=match):
        small(**kw).fit(cyclic(), show_progress=False)


def test_bad_data():
    with pytest.raises(TypeError, match="Interactions"):
        small().fit(np.zeros((3, 3)), show_progress=False)
    one_each = Interactions.from_arrays(np.arange(5), np.arange(5))
    with pytest.raises(DataError, match="at least 2 items"):
        small().fit(one_each, show_progress=False)
    with pytest.raises(ValueError, match="mask_prob"):
        small(BERT4Rec, mask_prob=0.0).fit(cyclic(), show_progress=False)
    short = Interactions.from_arrays(np.array([0, 0, 1]), np.array([1, 2, 3]))
    with pytest.raises(DataError):
        leave_one_out(short, by="timestamp")
    m = small(iterations=1).fit(cyclic(), show_progress=False)
    with pytest.raises(DataError, match="fitted on"):
        m.set_histories(Interactions.from_arrays(np.array([0, 1]), np.array([1, 2])))
    assert torch.is_tensor(m.net_.item.weight)


def test_gather_rows_matches_direct_indexing():
    from recfb.train.sequence import gather_rows

    w1 = torch.randn(20, 3, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    parts = [torch.tensor([[0, 5], [5, 19]]), torch.tensor([3, 5, 3])]
    got = gather_rows(w1, parts)
    want = [w2[p] for p in parts]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    (got[0].sum() * 2 + (got[1] ** 2).sum()).backward()
    (want[0].sum() * 2 + (want[1] ** 2).sum()).backward()
    torch.testing.assert_close(w1.grad, w2.grad)


def test_length_groups_partition_the_batch():
    from recfb.train.sequence import length_groups

    w = np.random.default_rng(0).integers(1, 51, size=300)
    groups = length_groups(w)
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(300))
    for g in groups:
        assert w[g].max() <= max(4, 2 * w[g].min() - 1) or w[g].max() <= 4


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_grouped_batch_loss_equals_one_padded_tensor(loss):
    """The batch loss computed in trimmed length groups with one gather of the item table
    equals the plain computation: every user padded to max_len in one tensor."""
    data = cyclic(min_len=2, max_len=30)
    m = small(iterations=1, max_len=20, loss=loss).fit(data, show_progress=False)
    m.net_.train()  # dropout is 0, so train mode is deterministic
    rows = np.arange(data.n_users)
    gen = torch.Generator().manual_seed(5)
    got, count = m._batch_loss(rows, gen)
    g_got = torch.autograd.grad(got, m.net_.item.weight)[0]
    # reference: one padded tensor, no trimming, no grouping
    inp = torch.as_tensor(pad_left(m.hist_indptr_, m.hist_items_, rows, 20, drop_last=1))
    tgt = torch.as_tensor(pad_left(m.hist_indptr_, m.hist_items_, rows, 20, drop_first=1))
    h = m.net_(inp)
    valid = tgt > 0
    assert count == int(valid.sum())
    if loss == "softmax":
        want = torch.nn.functional.cross_entropy(m.net_.logits(h[valid]), tgt[valid] - 1, reduction="sum")
    else:  # the same negatives: redraw them in the grouped order and hand them to each user's positions
        from recfb.train.sequence import length_groups
        lengths = np.diff(m.hist_indptr_)
        order = np.concatenate([rows[g] for g in length_groups(m._widths(lengths))])
        users = torch.as_tensor(order).repeat_interleave(torch.as_tensor(np.minimum(lengths[order] - 1, 20)))
        neg = m._history_negatives.sample(users, 1, torch.Generator().manual_seed(5))[:, 0]
        by_user = {}  # a user's positions come oldest first in both layouts
        for u, j in zip(users.tolist(), neg.tolist()):  # test reference, tiny
            by_user.setdefault(u, []).append(j)
        hv, t = h[valid], tgt[valid] - 1
        r = torch.as_tensor(rows).unsqueeze(1).expand_as(tgt)[valid]
        n = torch.tensor([by_user[u].pop(0) for u in r.tolist()])
        V = m.net_.item_vectors()
        s_pos, s_neg = (hv * V[t]).sum(-1), (hv * V[n]).sum(-1)
        want = (torch.nn.functional.softplus(-s_pos) + torch.nn.functional.softplus(s_neg)).sum()
    g_want = torch.autograd.grad(want, m.net_.item.weight)[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-5)


def test_time_limit_sampled_validation_and_stop_reason():
    train, valid, _ = leave_one_out(cyclic(n_users=80), by="row")
    m = small(iterations=50, valid_negatives=5, patience=None).fit(train, valid_items=valid, show_progress=False,
                                                                    time_limit=0.01)
    assert m.stopped_by_ == "time_limit" and len(m.history_) == 1 and "valid" in m.history_[0]
    assert 0 <= m.history_[0]["valid"] <= 1
    with pytest.raises(ValueError, match="valid_negatives"):
        small(valid_negatives=0).fit(train, show_progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bfloat16 autocast path)")
@pytest.mark.parametrize("cls,kw", [(SASRec, {"loss": "bce"}), (gSASRec, {"num_negatives": 4}),
                                    (BERT4Rec, {"num_heads": 2, "iterations": 100})])
def test_cuda_bf16_training_learns_like_cpu(cls, kw):
    data = cyclic()
    last = np.array([s[-1] for s in data.sequences("row")])
    hits = []
    for device in ("cpu", "cuda"):
        m = small(cls, device=device, **kw).fit(data, show_progress=False)
        ids, _ = m.recommend(np.arange(data.n_users), m.history_matrix(), N=1, filter_already_liked_items=False)
        hits.append(np.mean(ids[:, 0] == (last + 1) % N_ITEMS))
    assert hits[1] > 0.9 and abs(hits[0] - hits[1]) < 0.1
