"""check_csr guards every matrix that enters recfb (issue 15): index bounds, indptr
consistency, sortedness, duplicates, non-finite weights and stored zeros, in O(nnz)."""
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.models import EASE, ItemKNN, MostPopular
from recfb.utils.errors import DataError
from recfb.utils.validation import check_csr


def clean(n_users=30, n_items=12, seed=0):
    X = sp.random(n_users, n_items, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    X.data[:] = 1.0
    return X


def corrupt(X, entry, value):
    """A copy of X whose stored entry ``entry`` has column index ``value`` (as a caller who
    edits ``indices`` by hand would make it)."""
    Y = X.copy()
    Y.indices = Y.indices.copy()
    Y.indices[entry] = value
    return Y


# ---------------------------------------------------------------------- the crashes, in a child
CHILD = textwrap.dedent("""
    import json, numpy as np, scipy.sparse as sp
    from recfb.models import EASE, ItemKNN
    from recfb.serving import ItemIndex
    G = sp.random(50, 20, density=0.3, format="csr", random_state=0, dtype=np.float32); G.data[:] = 1
    def bad(v):
        X = G.copy(); X.indices = X.indices.copy(); X.indices[5] = v; return X
    knn = ItemKNN(neighbors=3).fit(G, show_progress=False)
    ease = EASE(l2=1.0).fit(G, show_progress=False)
    cases = {
        "EASE.fit": lambda X: EASE(l2=1.0).fit(X, show_progress=False),
        "ItemKNN.fit": lambda X: ItemKNN(neighbors=3).fit(X, show_progress=False),
        "ItemKNN.recommend": lambda X: knn.recommend(np.arange(50), X, N=2),
        "EASE.score": lambda X: ease.score(np.arange(50), X),
        "serving item-item": lambda X: ItemIndex.from_model(knn).attach_users(user_items=X).recommend_users(
            np.arange(50), k=2),
        "serving search": lambda X: ItemIndex.from_model(knn).search(X, k=2),
    }
    out = {}
    for name, call in cases.items():
        for v in (10**8, -3):
            try:
                call(bad(v))
                out[f"{name} {v}"] = "no error"
            except Exception as exc:
                out[f"{name} {v}"] = type(exc).__name__ + ": " + str(exc)
    print(json.dumps(out))
""")


def test_out_of_bounds_indices_raise_instead_of_crashing_the_process():
    # before the fix these killed the interpreter with SIGSEGV (rc -11) or wrapped -3 to 17
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"child died (rc {r.returncode}): {r.stderr[-2000:]}"
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(results) == 12
    for case, outcome in results.items():
        assert outcome.startswith("DataError"), (case, outcome)
        assert ("100000000" in outcome or "-3" in outcome) and "0..19" in outcome, (case, outcome)


# ---------------------------------------------------------------------- structure
@pytest.mark.parametrize("value", [12, 10**6, -1, -12])
def test_column_index_outside_the_shape_names_it(value):
    with pytest.raises(DataError, match=f"column index {value} .*outside 0..11"):
        check_csr(corrupt(clean(), 3, value))


def test_indptr_must_be_consistent():
    X = clean()
    Y = X.copy()
    Y.indptr = Y.indptr.copy()
    Y.indptr[4], Y.indptr[5] = Y.indptr[5], Y.indptr[4] - 1  # decreasing
    with pytest.raises(DataError, match="indptr decreases at row 4"):
        check_csr(Y)
    Z = sp.csr_matrix(X, copy=True)
    Z.indptr = Z.indptr[:-1]
    with pytest.raises(DataError, match="indptr has 30 entries, expected 31"):
        check_csr(Z)
    W = sp.csr_matrix(X, copy=True)
    W.indptr = W.indptr.copy()
    W.indptr[-1] += 5
    with pytest.raises(DataError, match="indptr runs from 0 to"):
        check_csr(W)


def test_csc_and_coo_input_are_bounds_checked_before_conversion():
    C = clean().tocsc()
    C.indices = C.indices.copy()
    C.indices[0] = 99
    with pytest.raises(DataError, match="row index 99"):
        check_csr(C)
    Q = clean().tocoo()
    Q.col = Q.col.copy()
    Q.col[2] = -5
    with pytest.raises(DataError, match="column index -5"):
        check_csr(Q)


def test_unsorted_indices_are_sorted_with_a_warning_and_the_input_is_untouched():
    X = clean()
    rng = np.random.default_rng(1)
    data = rng.uniform(1, 5, X.nnz).astype(np.float32)
    idx = X.indices.copy()
    dat = data.copy()
    for r in range(X.shape[0]):  # test setup: shuffle each row (not library code)
        lo, hi = X.indptr[r], X.indptr[r + 1]
        p = rng.permutation(hi - lo) + lo
        idx[lo:hi], dat[lo:hi] = idx[p], dat[p]
    U = sp.csr_matrix((dat, idx, X.indptr.copy()), shape=X.shape)
    before = U.indices.copy()
    with pytest.warns(UserWarning, match="unsorted column indices"):
        out = check_csr(U)
    assert np.array_equal(U.indices, before)
    assert all(np.all(np.diff(out.indices[out.indptr[r]:out.indptr[r + 1]]) > 0) for r in range(out.shape[0]))
    dense = np.zeros(X.shape, np.float32)
    dense[np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), idx] = dat
    assert np.array_equal(out.toarray(), dense)


def test_duplicates_are_summed_with_a_warning_saying_how_many():
    X = sp.csr_matrix((np.array([1, 2, 3, 4], np.float32), np.array([0, 2, 2, 2]), np.array([0, 1, 4])),
                      shape=(2, 3))
    with pytest.warns(UserWarning, match="2 duplicate"):
        out = check_csr(X)
    assert np.array_equal(out.toarray(), [[1, 0, 0], [0, 0, 9]])
    assert out.nnz == 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_raise(bad):
    X = clean()
    X.data[4] = bad
    with pytest.raises(DataError, match="non-finite weight .* at stored entry 4"):
        check_csr(X)


def test_float64_weight_that_overflows_float32_is_named():
    X = clean().astype(np.float64)
    X.data[0] = 1e300
    with pytest.raises(DataError, match="1e\\+300.*overflows float32"):
        check_csr(X)


def test_stored_zeros_are_removed_with_a_warning_saying_how_many():
    X = clean()
    X.data[[0, 5, 7]] = 0.0
    with pytest.warns(UserWarning, match="3 stored zero"):
        out = check_csr(X)
    assert out.nnz == X.nnz - 3 and np.all(out.data != 0)
    assert np.array_equal(out.toarray(), X.toarray())
    assert X.nnz == clean().nnz  # the caller's matrix keeps its entries


def test_all_stored_zeros_is_empty_when_empty_is_refused():
    X = clean()
    X.data[:] = 0
    with pytest.raises(DataError, match="all are zero"):
        check_csr(X, allow_empty=False)


def test_weights_follow_sorting_and_zero_removal():
    indptr = np.array([0, 3, 4])
    X = sp.csr_matrix((np.array([1, 0, 2, 5], np.float32), np.array([2, 0, 1, 1]), indptr), shape=(2, 3))
    w = np.array([10, 20, 30, 40], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, wout = check_csr(X, weights=w)
    # entries (0,2)=1 w10, (0,0)=0 w20 dropped, (0,1)=2 w30, (1,1)=5 w40 -> sorted (0,1),(0,2),(1,1)
    assert np.array_equal(out.indices, [1, 2, 1]) and np.array_equal(wout, [30, 10, 40])
    D = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 1]), np.array([0, 2, 2])), shape=(2, 3))
    with pytest.raises(DataError, match="duplicate"):
        check_csr(D, weights=np.ones(2))


# ---------------------------------------------------------------------- a stored zero is not an interaction
def with_stored_zeros(X, entries):
    Z = X.copy()
    Z.data[entries] = 0.0
    return Z


def dropped(X):
    Y = X.copy()
    Y.eliminate_zeros()
    return Y


def test_itemknn_binarize_ignores_stored_zeros():
    X = clean(60, 15)
    Z = with_stored_zeros(X, np.arange(0, X.nnz, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ItemKNN(neighbors=5).fit(Z, show_progress=False).similarity_.toarray()
    b = ItemKNN(neighbors=5).fit(dropped(Z), show_progress=False).similarity_.toarray()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, ItemKNN(neighbors=5).fit(X, show_progress=False).similarity_.toarray())


def test_already_liked_filter_ignores_stored_zeros():
    X = clean(40, 10)
    model = MostPopular().fit(X, show_progress=False)
    best = int(np.argmax(np.asarray(X.sum(axis=0)).ravel()))
    row = sp.csr_matrix((np.array([0.0], np.float32), np.array([best]), np.array([0, 1])), shape=(1, 10))
    with pytest.warns(UserWarning, match="1 stored zero"):
        ids, _ = model.recommend(0, row, N=3)
    assert ids[0] == best  # the zero is no interaction: the item is not filtered
    ids_liked, _ = model.recommend(0, sp.csr_matrix(row.toarray() + np.eye(1, 10, best, dtype=np.float32)), N=3)
    assert best not in ids_liked


def test_evaluation_ignores_stored_zeros_in_test_rows():
    from recfb.evaluation import ranking_metrics
    X = clean(40, 10, seed=2)
    test = clean(40, 10, seed=3)
    model = EASE(l2=10.0).fit(X, show_progress=False)
    Z = with_stored_zeros(test, np.arange(0, test.nnz, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ranking_metrics(model, X, Z, k=5)
    want = ranking_metrics(model, X, dropped(Z), k=5)
    assert got == want


def test_index_load_refuses_stored_user_rows_outside_the_catalogue(tmp_path):
    import hashlib

    from recfb.serving import ItemIndex
    X = clean(30, 12)
    index = ItemIndex.from_model(ItemKNN(neighbors=3).fit(X, show_progress=False)).attach_users(user_items=X)
    path = index.save(tmp_path / "ix") or tmp_path / "ix"
    arrays_file = tmp_path / "ix" / "arrays.npz"
    with np.load(arrays_file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["user_items.indices"] = arrays["user_items.indices"].copy()
    arrays["user_items.indices"][3] = 10**7  # a tampered file with recomputed checksums
    from recfb.serving import persist
    from recfb.utils.container import METADATA_KEY, write_container
    write_container(arrays_file, {k: v for k, v in arrays.items() if k != METADATA_KEY}, {}, persist.ARRAYS_FORMAT, 1)
    meta_file = tmp_path / "ix" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["sha256"]["arrays.npz"] = hashlib.sha256(arrays_file.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="column index 10000000"):
        ItemIndex.load(path)


def test_exclude_matrix_is_bounds_checked():
    from recfb.serving import ItemIndex
    X = clean(30, 12)
    index = ItemIndex.from_model(ItemKNN(neighbors=3).fit(X, show_progress=False))
    with pytest.raises(DataError, match="exclude holds column index -2"):
        index.search(X[:5], k=2, exclude=corrupt(X[:5], 1, -2))


# ---------------------------------------------------------------------- fuzz: hand-built CSR arrays
from hypothesis import event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 6), st.integers(1, 6), st.lists(st.integers(-8, 8), max_size=20),
       st.lists(st.integers(-2, 12), max_size=8), st.lists(st.sampled_from([0.0, 1.0, 2.5, -1.0, np.nan]), max_size=20),
       st.booleans())
def test_hand_built_csr_is_either_refused_or_made_canonical(n_rows, n_cols, indices, indptr, data, consistent):
    n = min(len(indices), len(data))
    X = sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    X.indices = np.asarray(indices[:n], np.int32)
    X.data = np.asarray(data[:n], np.float32)
    if consistent:  # a valid indptr: the interesting part is then indices and data
        cuts = sorted(min(max(c, 0), n) for c in (indptr + [n] * n_rows)[: max(n_rows - 1, 0)])
        X.indptr = np.asarray([0] + cuts + [n] if n_rows else [0], np.int32)
        if n_rows == 0:
            X.indices, X.data = X.indices[:0], X.data[:0]
    else:
        X.indptr = np.asarray(indptr, np.int32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = check_csr(X)
    except DataError:
        event("refused")
        return
    event("accepted")
    # accepted: the structure was valid; the result is canonical and equals a brute-force build
    assert out.has_canonical_format and np.all(out.data > 0)
    dense = np.zeros((n_rows, n_cols), np.float64)
    for r in range(n_rows):  # brute force over the (tiny) input
        for j in range(X.indptr[r], X.indptr[r + 1]):
            dense[r, X.indices[j]] += X.data[j]
    assert np.allclose(out.toarray(), dense)
