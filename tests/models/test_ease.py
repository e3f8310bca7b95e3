import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.models import _gram
from recfb.models.ease import EASE, _dense_peak_bytes, _sparse_peak_bytes, available_memory, blas_threads
from recfb.testing import RecommenderContract
from recfb.utils.errors import DataError


class TestEASE(RecommenderContract):
    def make_model(self):
        return EASE(l2=10.0, device="cpu")


class TestSparseEASE(RecommenderContract):
    def make_model(self):
        return EASE(l2=10.0, method="sparse", max_neighbors=12)


# ---------------------------------------------------------------------- helpers
def random_matrix(n_users=150, n_items=60, density=0.15, seed=0, weighted=True):
    """Random interactions with an empty user row and an empty item column; weights are
    multiples of 0.25, so every product and sum of the Gram matrix is exact in float32."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[3, :] = False
    dense[:, 5] = False
    values = rng.integers(1, 9, size=(n_users, n_items)) / 4.0 if weighted else np.ones((n_users, n_items))
    return sp.csr_matrix(np.where(dense, values, 0.0).astype(np.float32))


def numpy_ease(X, l2, dropout=0.0):
    """Textbook EASE / EDLAE in float64 with np.linalg.inv."""
    D = X.toarray().astype(np.float64)
    G = D.T @ D
    G[np.diag_indices_from(G)] += l2 + dropout / (1 - dropout) * np.diag(G)
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


def top10_agree(S, R, X):
    """Top-10 ids equal for every user, ignoring positions where the reference has a tie."""
    seen = X.toarray() > 0
    S, R = np.where(seen, -np.inf, S), np.where(seen, -np.inf, R)
    a, b = np.argsort(-S, axis=1, kind="stable")[:, :10], np.argsort(-R, axis=1, kind="stable")[:, :10]
    ref_sorted = -np.sort(-R, axis=1)
    ties = np.isclose(ref_sorted[:, :10], ref_sorted[:, 1:11], rtol=1e-5, atol=1e-7)
    return np.all((a == b) | ties)


# ---------------------------------------------------------------------- Gram kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [True, False])
def test_gram_kernel_equals_scipy_exactly(dtype, weighted):
    """Empty rows, empty columns and weights: the kernel's X^T X is scipy's, bit for bit."""
    X = random_matrix(weighted=weighted)
    ref = (X.T @ X).toarray().astype(dtype)
    got = _gram.gram_dense(X, dtype)
    assert got.dtype == dtype and np.array_equal(got, ref)
    upper = _gram.gram_upper(X, np.zeros((X.shape[1],) * 2, dtype))
    assert np.array_equal(np.triu(upper), np.triu(ref)) and not np.tril(upper, -1).any()


def test_duplicate_entries_count_as_their_sum():
    """A CSR matrix with repeated (user, item) entries must not break the upper-triangle
    kernel, which reads each row onwards from an entry."""
    X = sp.csr_matrix((np.array([1.0, 2.0, 1.0, 3.0], np.float32), np.array([0, 0, 1, 2]), np.array([0, 4])),
                      shape=(1, 3))
    assert not X.has_canonical_format
    summed = X.copy()
    summed.sum_duplicates()
    np.testing.assert_array_equal(_gram.gram_dense(X), (summed.T @ summed).toarray())
    a = EASE(l2=1.0, device="cpu").fit(X, show_progress=False).weights_
    np.testing.assert_array_equal(a, EASE(l2=1.0, device="cpu").fit(summed, show_progress=False).weights_)


def test_gram_kernel_single_thread_and_odd_shapes():
    numba = pytest.importorskip("numba")
    X = sp.csr_matrix(np.array([[0, 2, 0], [0, 0, 0], [1, 1, 3]], dtype=np.float32))
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(_gram.gram_dense(X), (X.T @ X).toarray())
    finally:
        numba.set_num_threads(previous)
    one = sp.csr_matrix(np.ones((4, 1), np.float32))
    np.testing.assert_array_equal(_gram.gram_dense(one), [[4.0]])


def test_top_neighbors_match_brute_force():
    X = random_matrix(n_users=200, n_items=40, density=0.2, seed=3)
    k, threshold = 6, 0.1
    idx, cnt, diag = _gram.gram_top_neighbors(X, k, threshold)
    G = (X.T @ X).toarray().astype(np.float64)
    np.testing.assert_allclose(diag, np.diag(G))
    with np.errstate(invalid="ignore", divide="ignore"):
        C = G / np.sqrt(np.outer(np.diag(G), np.diag(G)))
    np.fill_diagonal(C, 0)
    C = np.nan_to_num(C)
    for i in range(40):
        eligible = np.flatnonzero((C[i] >= threshold) & (G[i] > 0))
        got = idx[i, :cnt[i]]
        assert cnt[i] == min(k, eligible.size) and np.all(np.diff(got) > 0)
        if eligible.size:
            kth = np.sort(C[i, eligible])[::-1][min(k, eligible.size) - 1]
            assert np.all(C[i, got] >= kth - 1e-6) and set(got) <= set(eligible)


# ---------------------------------------------------------------------- dense EASE
def test_dense_equals_numpy_ease():
    X = random_matrix(n_users=300, n_items=80, density=0.1, seed=1)
    B = numpy_ease(X, l2=5.0)
    model = EASE(l2=5.0, device="cpu").fit(X, show_progress=False)
    assert model.method_ == "dense" and model.weights_.dtype == np.float32
    assert np.all(np.diag(model.weights_) == 0)
    users = np.arange(X.shape[0])
    S = model.score(users, X)
    R = X.toarray() @ B
    assert np.abs(S - R).max() <= 1e-4 * np.abs(R).max()
    assert np.abs(model.weights_ - B).max() <= 1e-4 * np.abs(B).max()
    assert top10_agree(S, R, X)


def test_default_l2_is_derived_from_the_mean_item_degree_and_is_scale_free():
    X = random_matrix(n_users=300, n_items=80, density=0.1, seed=1)
    X.data[:] = 1.0
    model = EASE(device="cpu").fit(X, show_progress=False)
    expected = 70 * np.sqrt(X.nnz / X.shape[1])  # binary: sum(x^2) / nnz == 1
    assert model.l2_ == pytest.approx(expected, abs=1e-3) and model.get_params()["l2"] is None
    np.testing.assert_allclose(model.weights_, numpy_ease(X, l2=model.l2_), atol=1e-4)
    assert EASE(device="cpu").derived_params(X) == {"l2": model.l2_} and EASE(l2=3.0).derived_params(X) == {}
    scaled = X * 3.0  # weights x3: Gram x9, so the derived lambda x9 and the same B
    m3 = EASE(device="cpu").fit(scaled, show_progress=False)
    assert m3.l2_ == pytest.approx(9 * model.l2_, rel=1e-6)
    np.testing.assert_allclose(m3.weights_, model.weights_, atol=1e-4)
    assert EASE(l2=5.0, device="cpu").fit(X, show_progress=False).l2_ == 5.0  # explicit wins


def test_dropout_equals_closed_form():
    """EDLAE: Lambda = l2 I + p / (1 - p) diagMat(diag(X^T X))."""
    X = random_matrix(seed=2)
    model = EASE(l2=2.0, dropout=0.3, dtype="float64", device="cpu").fit(X, show_progress=False)
    np.testing.assert_allclose(model.weights_, numpy_ease(X, 2.0, 0.3), rtol=1e-9, atol=1e-12)
    plain = EASE(l2=2.0, dtype="float64", device="cpu").fit(X, show_progress=False)
    assert not np.allclose(plain.weights_, model.weights_)


def test_float32_agrees_with_float64():
    X = random_matrix(n_users=400, n_items=120, density=0.08, seed=4, weighted=False)
    f32 = EASE(l2=20.0, device="cpu").fit(X, show_progress=False)
    f64 = EASE(l2=20.0, dtype="float64", device="cpu").fit(X, show_progress=False)
    assert f64.weights_.dtype == np.float64
    np.testing.assert_allclose(f32.weights_, f64.weights_, rtol=0, atol=1e-5 * np.abs(f64.weights_).max())
    users = np.arange(X.shape[0])
    a, _ = f32.recommend(users, X, N=10)
    b, _ = f64.recommend(users, X, N=10)
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)])
    assert overlap >= 0.999


def test_similar_items_follow_rows_of_B():
    X = random_matrix(seed=5)
    model = EASE(l2=5.0, device="cpu").fit(X, show_progress=False)
    ids, scores = model.similar_items(7, N=6)
    assert ids[0] == 7 and scores[0] == 1.0 and np.all(np.abs(scores[1:]) < 1)
    expected = np.argsort(-np.where(np.arange(X.shape[1]) == 7, -np.inf, model.weights_[7]), kind="stable")[:5]
    assert set(ids[1:]) == set(expected)


def test_singular_gram_without_l2_is_a_clear_error():
    X = random_matrix(seed=6)  # item 5 has no interactions: X^T X is singular
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        EASE(l2=0.0, device="cpu").fit(X, show_progress=False)
    X = X.tolil()
    X[:, 1] = X[:, 0]  # two identical items: every neighbourhood holding both is singular
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        EASE(l2=0.0, method="sparse", max_neighbors=100).fit(X.tocsr(), show_progress=False)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    X = random_matrix(n_users=500, n_items=150, density=0.1, seed=7)
    cpu = EASE(l2=5.0, device="cpu").fit(X, show_progress=False)
    gpu = EASE(l2=5.0, device="cuda").fit(X, show_progress=False)
    assert gpu.device_ == "cuda"
    np.testing.assert_allclose(gpu.weights_, cpu.weights_, rtol=0, atol=1e-4 * np.abs(cpu.weights_).max())
    gpu64 = EASE(l2=5.0, device="cuda", dtype="float64").fit(X, show_progress=False)
    np.testing.assert_allclose(gpu64.weights_, numpy_ease(X, 5.0), rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------- sparse EASE
def test_sparse_equals_dense_when_everything_is_kept():
    """Column i of EASE is the ridge regression of item i on all the others: with every
    item a neighbour of every other, the sparse method is exact."""
    X = random_matrix(n_users=400, n_items=50, density=0.4, seed=8)
    X = X[:, np.flatnonzero(X.getnnz(axis=0))].tocsr()  # drop the empty column
    n = X.shape[1]
    B = numpy_ease(X, l2=3.0, dropout=0.2)
    model = EASE(l2=3.0, dropout=0.2, method="sparse", max_neighbors=n, dtype="float64").fit(X, show_progress=False)
    assert model.method_ == "sparse" and sp.issparse(model.weights_)
    assert model.weights_.diagonal().max() == 0
    np.testing.assert_allclose(model.weights_.toarray(), B, rtol=0, atol=1e-9 * np.abs(B).max())


def test_sparse_approaches_dense_as_neighbours_grow():
    X = random_matrix(n_users=500, n_items=100, density=0.3, seed=9, weighted=False)
    X = X[:, np.flatnonzero(X.getnnz(axis=0))].tocsr()  # every pair of items co-occurs
    users = np.arange(X.shape[0])
    R = X.toarray() @ numpy_ease(X, l2=10.0)
    errors = []
    for k in (5, 20, X.shape[1] - 1):
        model = EASE(l2=10.0, method="sparse", max_neighbors=k).fit(X, show_progress=False)
        assert model.weights_.getnnz(axis=0).max() <= k
        errors.append(np.abs(model.score(users, X) - R).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] <= 1e-4 * np.abs(R).max()  # every other item kept: exact


def test_sparse_batches_give_the_same_weights():
    X = random_matrix(n_users=300, n_items=700, density=0.02, seed=10)
    idx, cnt, _ = _gram.gram_top_neighbors(X, 8, 0.0)
    one, failed = _gram.neighborhood_weights(X, idx, cnt, 4.0, 0.1)
    few, _ = _gram.neighborhood_weights(X, idx, cnt, 4.0, 0.1, max_bytes=1)  # batches of 256 items
    assert failed == 0
    np.testing.assert_array_equal(one, few)


def test_sparse_threshold_drops_weak_neighbours():
    X = random_matrix(n_users=300, n_items=80, density=0.1, seed=11)
    loose = EASE(l2=5.0, method="sparse", max_neighbors=50).fit(X, show_progress=False)
    strict = EASE(l2=5.0, method="sparse", max_neighbors=50, threshold=0.3).fit(X, show_progress=False)
    assert strict.weights_.nnz < loose.weights_.nnz


# ---------------------------------------------------------------------- memory guard
def test_dense_over_max_memory_is_a_clear_error():
    X = random_matrix()
    with pytest.raises(MemoryError, match=r"GiB.*method='sparse'"):
        EASE(method="dense", max_memory=10_000, device="cpu").fit(X, show_progress=False)


def test_auto_switches_to_sparse_and_says_so():
    X = random_matrix(n_users=100, n_items=3000, density=0.004, seed=12)
    dense = _dense_peak_bytes(3000, X.nnz, np.dtype(np.float32), "cpu")
    sparse = _sparse_peak_bytes(3000, X.nnz, 16, np.dtype(np.float32))
    assert sparse < dense
    with pytest.warns(UserWarning, match="using method='sparse'"):
        model = EASE(l2=5.0, max_neighbors=16, max_memory=(sparse + dense) // 2, device="cpu").fit(
            X, show_progress=False)
    assert model.method_ == "sparse" and sp.issparse(model.weights_)
    ids, _ = model.recommend(np.arange(5), X[:5], N=5)
    assert ids.shape == (5, 5)
    with pytest.raises(MemoryError, match="max_neighbors"):
        EASE(method="sparse", max_memory=10_000).fit(X, show_progress=False)


def test_default_max_memory_is_available_ram():
    assert 0 < available_memory() < 2**50


def test_blas_threads_never_exceed_the_blas_setting():
    from threadpoolctl import threadpool_info, threadpool_limits

    current = max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] or [1])
    assert 1 <= blas_threads(5000) <= current
    assert blas_threads(10) == current  # small problems: not worth measuring
    with threadpool_limits(1, user_api="blas"):
        assert blas_threads(5000) == 1
    X = random_matrix()
    assert EASE(l2=5.0, dtype="float64", device="cpu").fit(X, show_progress=False).blas_threads_ == 1


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("params, match", [
    ({"l2": -1.0}, "l2 == -1.0"),
    ({"l2": float("nan")}, "l2 =="),
    ({"dropout": 1.0}, r"dropout == 1.0, must be in \[0, 1\)"),
    ({"dropout": -0.1}, "dropout == -0.1"),
    ({"dtype": "float16"}, "dtype"),
    ({"method": "approximate"}, "method"),
    ({"device": "tpu"}, "device"),
    ({"max_memory": -5}, "max_memory"),
    ({"max_neighbors": 0}, "max_neighbors"),
    ({"threshold": 1.5}, "threshold"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        EASE(**params).fit(random_matrix(), show_progress=False)


def test_all_zero_matrix_is_rejected():
    X = sp.csr_matrix((np.zeros(3, np.float32), ([0, 1, 2], [0, 1, 2])), shape=(4, 4))
    with pytest.raises(DataError, match="all are zero"):
        EASE().fit(X, show_progress=False)
    with pytest.raises(DataError, match="empty"):
        EASE().fit(sp.csr_matrix((4, 4), dtype=np.float32), show_progress=False)


def test_non_csr_input_is_converted_with_a_warning():
    X = random_matrix()
    with pytest.warns(UserWarning, match="converted from COO to CSR"):
        model = EASE(l2=5.0, device="cpu").fit(X.tocoo(), show_progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference = EASE(l2=5.0, device="cpu").fit(X, show_progress=False)
    np.testing.assert_array_equal(model.weights_, reference.weights_)


def test_cuda_requested_without_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cuda"):
        EASE(device="cuda").fit(random_matrix(), show_progress=False)
