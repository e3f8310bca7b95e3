"""Exact search equals a brute-force numpy top-k, with exclusions, filters and padding."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from serving_helpers import assert_exact_topk, brute_scores

from recfb.serving import ItemIndex
from recfb.utils.errors import DataError


def random_exclusions(n_queries, n_items, per_row, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.choice(n_items, size=min(per_row, n_items), replace=False) for _ in range(n_queries)]


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("n_items,item_block", [(3000, None), (5003, 1024), (100, None)])
def test_exact_matches_brute_force(metric, n_items, item_block):
    """Single tile, several tiles with a ragged last one, and a catalogue too small to group."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n_items, 24)).astype(np.float32)
    Q = rng.standard_normal((300, 24)).astype(np.float32)
    index = ItemIndex.from_vectors(X, metric=metric, kind="exact", device="cpu")
    if item_block:
        index._exact_searcher().item_block = item_block
    for k in (1, 10, 50):
        ids, scores = index.search(Q, k)
        assert ids.dtype == np.int32 and scores.dtype == np.float32
        assert_exact_topk(ids, scores, brute_scores(Q, X, metric), min(k, n_items))


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exclusion_and_filter_equal_brute_force(metric):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2000, 16)).astype(np.float32)
    Q = rng.standard_normal((64, 16)).astype(np.float32)
    excl = random_exclusions(64, 2000, 200, seed=3)
    banned = rng.choice(2000, 50, replace=False)
    index = ItemIndex.from_vectors(X, metric=metric, kind="exact", device="cpu")
    index._exact_searcher().item_block = 512  # exclusions spread over several tiles
    S = brute_scores(Q, X, metric, exclude=excl, banned=banned)
    ids, scores = index.search(Q, 20, exclude=excl, filter_items=banned)
    assert_exact_topk(ids, scores, S, 20)
    # the same exclusions as a CSR matrix (e.g. user_items[userids]) give the same answer
    rows = sp.csr_matrix((np.ones(64 * 200, np.float32), np.concatenate(excl), np.arange(0, 64 * 200 + 1, 200)),
                         shape=(64, 2000))
    ids2, scores2 = index.search(Q, 20, exclude=rows, filter_items=banned)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)


def test_user_who_excluded_nearly_everything_gets_padding():
    """Regression guard: a user with 3 eligible items asking for 10 gets 3 items, then -1/-inf."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((500, 8)).astype(np.float32)
    Q = rng.standard_normal((3, 8)).astype(np.float32)
    everything_but_three = np.setdiff1d(np.arange(500), [7, 123, 499])
    excl = [everything_but_three, [], np.arange(500)]
    ids, scores = ItemIndex.from_vectors(X, kind="exact", device="cpu").search(Q, 10, exclude=excl)
    assert sorted(ids[0][:3]) == [7, 123, 499] and np.all(ids[0][3:] == -1) and np.all(np.isneginf(scores[0][3:]))
    assert np.all(ids[1] >= 0)
    assert np.all(ids[2] == -1) and np.all(np.isneginf(scores[2]))
    assert_exact_topk(ids, scores, brute_scores(Q, X, "ip", exclude=excl), 10)


def test_external_ids():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 4)).astype(np.float32)
    names = np.array([f"item-{i}" for i in range(50)])
    index = ItemIndex.from_vectors(X, item_ids=names, device="cpu")
    internal, _ = index.search(X[:2], 3)
    external, _ = index.search(X[:2], 3, ids="external")
    np.testing.assert_array_equal(external, names[internal])
    padded, _ = index.search(X[:1], 3, exclude=[np.arange(49)], ids="external")
    assert padded[0].tolist()[1:] == ["", ""]
    int_ids = ItemIndex.from_vectors(X, item_ids=np.arange(1000, 1050), device="cpu")
    ext, _ = int_ids.search(X[:1], 2, exclude=[np.arange(49)], ids="external")
    assert ext[0].tolist()[1] == -1 and ext[0, 0] >= 1000


def test_k_larger_than_catalogue_is_clamped():
    X = np.eye(5, dtype=np.float32)
    ids, scores = ItemIndex.from_vectors(X, device="cpu").search(X[:2], 10_000)
    assert ids.shape == (2, 5) and ids[0, 0] == 0 and ids[1, 0] == 1


@pytest.mark.parametrize("queries,k,error,match", [
    (np.zeros((2, 3), np.float32), 5, DataError, "dimension 3"),
    (np.zeros(4, np.float32), 5, DataError, "must be 2-D"),
    (np.array([[0, np.nan, 0, 0]], np.float32), 5, DataError, "non-finite"),
    (np.array([[0, np.inf, 0, 0]], np.float32), 5, DataError, "non-finite"),
    (np.zeros((2, 4), np.float32), 0, ValueError, "k == 0"),
    (np.zeros((2, 4), np.float32), -3, ValueError, "k == -3"),
    (np.zeros((2, 4), np.float32), 2.5, TypeError, "k must be an int"),
    (np.array([["a"] * 4]), 5, TypeError, "float32"),
    (sp.csr_matrix(np.zeros((2, 4), np.float32)), 5, TypeError, "sparse rows"),
])
def test_bad_queries_raise_clear_errors(queries, k, error, match):
    index = ItemIndex.from_vectors(np.eye(4, dtype=np.float32), device="cpu")
    with pytest.raises(error, match=match):
        index.search(queries, k)


def test_float64_queries_convert_with_a_warning():
    index = ItemIndex.from_vectors(np.eye(4, dtype=np.float32), device="cpu")
    with pytest.warns(UserWarning, match="converted from float64"):
        ids, _ = index.search(np.eye(4)[:1], 1)
    assert ids[0, 0] == 0


@pytest.mark.parametrize("exclude,filter_items,match", [
    ([[1]], None, "1 entry for every query"),
    ([[9], [0]], None, "item id 9"),
    ([[0.5], [0]], None, "integer item ids"),
    (sp.csr_matrix((2, 3)), None, "expected shape"),
    (None, [7], "item id 7"),
])
def test_bad_exclusions_raise(exclude, filter_items, match):
    index = ItemIndex.from_vectors(np.eye(4, dtype=np.float32), device="cpu")
    with pytest.raises((DataError, TypeError), match=match):
        index.search(np.eye(4, dtype=np.float32)[:2], 2, exclude=exclude, filter_items=filter_items)


def test_bad_construction_arguments():
    with pytest.raises(DataError, match="non-finite"):
        ItemIndex.from_vectors(np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(ValueError, match="metric"):
        ItemIndex.from_vectors(np.eye(2, dtype=np.float32), metric="cosine")
    with pytest.raises(ValueError, match="kind"):
        ItemIndex.from_vectors(np.eye(2, dtype=np.float32), kind="lsh")
    with pytest.raises(TypeError, match="unknown hnsw index parameter"):
        ItemIndex.from_vectors(np.eye(2, dtype=np.float32), kind="hnsw", ef=3)
    with pytest.raises(DataError, match="ids for"):
        ItemIndex.from_vectors(np.eye(2, dtype=np.float32), item_ids=[1, 2, 3])
    with pytest.raises(TypeError, match="cannot be indexed"):
        ItemIndex.from_model(object())


def test_metric_comes_from_the_model():
    """An L2 model (CML) is indexed by distance: the nearest item wins, not the longest."""
    class L2Model:
        metric = "l2"
        item_factors = np.array([[1, 0], [10, 0], [0, 1]], np.float32)

    index = ItemIndex.from_model(L2Model(), device="cpu")
    assert index.metric == "l2"
    ids, scores = index.search(np.array([[1.1, 0]], np.float32), 3)
    assert ids[0].tolist() == [0, 2, 1]
    np.testing.assert_allclose(scores[0], [-0.01, -2.21, -79.21], rtol=1e-5)  # -||q - x||^2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ip = ItemIndex.from_model(type("IP", (), {"item_factors": L2Model.item_factors})(), device="cpu")
    assert ip.metric == "ip" and ip.search(np.array([[1.1, 0]], np.float32), 1)[0][0, 0] == 1
