"""Per-call modes (fold-in, given histories) are arguments, never model state: two threads
calling one model at once in different modes each get their own mode's answer."""
import sys
import threading

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.data import Interactions
from recfb.models import MF, BERT4Rec, SASRec, gSASRec


def _assert_every_call_got(results, want):
    """Every (ids, scores) a thread got equals the serial answer, bit for bit."""
    for ids, scores in results:
        np.testing.assert_array_equal(ids, want[0])
        np.testing.assert_array_equal(scores, want[1])


def _race(calls, rounds=30):
    """Run every (name, fn) of ``calls`` in its own thread ``rounds`` times at once, with a tiny
    GIL switch interval so that the threads interleave inside the calls; returns each
    thread's results."""
    results = {name: [] for name, _ in calls}
    errors = []
    barrier = threading.Barrier(len(calls))

    def worker(name, fn):
        try:
            for _ in range(rounds):
                barrier.wait()
                results[name].append(fn())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=c) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    return results


def test_fold_in_and_plain_recommend_at_once():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((40, 30)) < 0.2).astype(np.float32))
    m = MF(factors=8, iterations=3, random_state=0, device="cpu").fit(X, show_progress=False)
    users = np.arange(40)
    # ids past n_users are only accepted in fold-in mode
    unseen = np.arange(40, 60)
    rows_unseen = X[:20]
    plain_want = m.recommend(users, X, N=5)
    fold_want = m.recommend(unseen, rows_unseen, N=5, recalculate_user=True)
    assert not np.array_equal(plain_want[1][:20], fold_want[1])  # the two modes differ
    got = _race([("plain", lambda: m.recommend(users, X, N=5)),
                 ("fold", lambda: m.recommend(unseen, rows_unseen, N=5, recalculate_user=True))], rounds=15)
    _assert_every_call_got(got["plain"], plain_want)
    _assert_every_call_got(got["fold"], fold_want)
    assert not hasattr(m, "_recalculate")


@pytest.mark.parametrize("cls", [SASRec, gSASRec, BERT4Rec], ids=lambda c: c.__name__)
def test_sequential_given_and_stored_histories_at_once(cls):
    """Histories given with a call and the stored ones, raced: each call sees its own (the
    sequential models share SASRec's scoring path; BERT4Rec's query differs, its mask token)."""
    rng = np.random.default_rng(1 if cls is SASRec else 2)
    users = np.repeat(np.arange(24), 6)
    ds = Interactions.from_arrays(users, rng.integers(0, 12, users.size), item_ids=np.arange(12))
    extra = {"num_heads": 2} if cls is BERT4Rec else {"num_negatives": 4} if cls is gSASRec else {}
    m = cls(factors=8, iterations=2, batch_size=16, max_len=6, dropout=0.0, random_state=0, device="cpu",
            **extra).fit(ds, show_progress=False)
    H = m.history_matrix()
    given = [list(rng.integers(0, 12, 3)) for _ in range(24)]
    empty = sp.csr_matrix((24, 12), dtype=np.float32)
    stored_want = m.recommend(np.arange(24), H, N=4)
    given_want = m.recommend(np.arange(24), empty, N=4, histories=given)
    assert not np.array_equal(stored_want[1], given_want[1])
    got = _race([("stored", lambda: m.recommend(np.arange(24), H, N=4)),
                 ("given", lambda: m.recommend(np.arange(24), empty, N=4, histories=given))], rounds=15)
    _assert_every_call_got(got["stored"], stored_want)
    _assert_every_call_got(got["given"], given_want)
    assert not hasattr(m, "_given_histories") and m.needs_fitted_users
