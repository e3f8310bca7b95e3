"""Concurrent searches from many threads give exactly the serial results."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.models import ItemKNN
from recfb.serving import ItemIndex


def _requests(n_items, Q, n=48, seed=0):
    """A mix of batch sizes, k, exclusions, filters and per-call search settings."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rows = rng.choice(len(Q), rng.integers(1, 20), replace=False)
        out.append(dict(rows=rows, k=int(rng.integers(1, 30)),
                        exclude=[rng.choice(n_items, rng.integers(0, 40), replace=False) for _ in rows],
                        filter_items=rng.choice(n_items, 5, replace=False) if i % 3 == 0 else None,
                        settings={"efSearch": int(rng.choice([16, 64, 200]))} if i % 2 else {"nprobe": int(rng.choice([1, 8]))}))
    return out


@pytest.mark.parametrize("kind,params", [("exact", {}), ("hnsw", {"M": 16}), ("ivf", {"nlist": 32})])
def test_concurrent_equals_serial(clustered_data, kind, params):
    X, Q = clustered_data
    index = ItemIndex.from_vectors(X, kind=kind, device="cpu", **params)
    params_before = dict(index.params)
    reqs = _requests(len(X), Q)

    def call(r):
        settings = r["settings"] if kind != "exact" else {}
        return index.search(Q[r["rows"]], r["k"], exclude=r["exclude"], filter_items=r["filter_items"], **settings)

    serial = [call(r) for r in reqs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(2):
            concurrent = list(pool.map(call, reqs))
            for (a_ids, a_s), (b_ids, b_s) in zip(serial, concurrent):
                np.testing.assert_array_equal(a_ids, b_ids)
                np.testing.assert_array_equal(a_s, b_s)
    assert index.params == params_before  # per-call settings never touch the shared index


def test_concurrent_item_item_equals_serial():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((200, 80)) < 0.1).astype(np.float32))
    index = ItemIndex.from_model(ItemKNN(neighbors=20).fit(X, show_progress=False))
    batches = [rng.choice(200, 15, replace=False) for _ in range(32)]
    call = lambda u: index.search(X[u], 7, exclude=X[u])  # noqa: E731
    serial = [call(u) for u in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for (a, sa), (b, sb) in zip(serial, pool.map(call, batches)):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(sa, sb)
