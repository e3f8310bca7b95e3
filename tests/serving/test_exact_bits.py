"""Exact search gives the same bits for the same query whatever the load: serially or from 8
threads at once, alone or inside any batch at any position, for inner product and L2, for
small and wide vectors (products are one fixed shape in single-threaded BLAS)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from recfb.serving._exact import ExactSearcher


@pytest.fixture(scope="module", params=[(3000, 16), (9000, 64), (2500, 256), (1200, 1000)],
                ids=lambda p: f"{p[0]}x{p[1]}")
def data(request):
    n, d = request.param
    rng = np.random.default_rng(d)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Q = rng.standard_normal((70, d)).astype(np.float32)
    return X, Q


def _single(searcher, Q, k):
    out = [searcher.search(Q[i:i + 1], k) for i in range(len(Q))]
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_single_query_equals_its_row_in_any_batch(data, metric):
    X, Q = data
    searcher = ExactSearcher(X, metric, "cpu")
    k = 15
    ids1, s1 = _single(searcher, Q, k)
    rng = np.random.default_rng(0)
    for size in (2, 3, 5, 33, 70):
        rows = rng.permutation(len(Q))[:size]
        ids, s = searcher.search(Q[rows], k)
        np.testing.assert_array_equal(ids, ids1[rows])
        np.testing.assert_array_equal(s.view(np.uint32), s1[rows].view(np.uint32))


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_eight_concurrent_threads_equal_serial(data, metric):
    X, Q = data
    searcher = ExactSearcher(X, metric, "cpu")
    rng = np.random.default_rng(1)
    batches = [rng.choice(len(Q), int(rng.integers(1, 40)), replace=False) for _ in range(24)]
    call = lambda rows: searcher.search(Q[rows], 10)  # noqa: E731
    serial = [call(b) for b in batches]
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):  # and under another intra-op thread count
            torch.set_num_threads(n_threads)
            with ThreadPoolExecutor(max_workers=8) as pool:
                for (a_ids, a_s), (b_ids, b_s) in zip(serial, pool.map(call, batches)):
                    np.testing.assert_array_equal(a_ids, b_ids)
                    np.testing.assert_array_equal(a_s.view(np.uint32), b_s.view(np.uint32))
    finally:
        torch.set_num_threads(threads)


def test_scores_are_the_exact_products_up_to_rounding(data):
    """The fixed blocking computes the same thing: float64 reference within float32 rounding."""
    X, Q = data
    ids, s = ExactSearcher(X, "ip", "cpu").search(Q, 5)
    ref = np.take_along_axis(Q.astype(np.float64) @ X.astype(np.float64).T, ids, axis=1)
    np.testing.assert_allclose(s, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert np.array_equal(ids[:, 0], np.argmax(Q.astype(np.float64) @ X.T.astype(np.float64), axis=1))
