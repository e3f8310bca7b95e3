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
    m = small(loss="softmax", patience=5).fit(train, valid=valid, show_progress=False)
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
