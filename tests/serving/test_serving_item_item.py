"""Item-item models (ItemKNN, EASE) and embedding models serve through the same calls and
return what the model's own recommend() returns."""
import numpy as np
import pytest
import scipy.sparse as sp

from recfb.models import ImplicitALS, ItemKNN
from recfb.serving import ItemIndex, UnknownUserError

try:
    from recfb.models.ease import EASE
except ImportError:  # pragma: no cover - EASE lands separately
    EASE = None


@pytest.fixture(scope="module")
def interactions():
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 120
    taste = rng.integers(0, 4, n_users)
    genre = rng.integers(0, 4, n_items)
    p = np.where(taste[:, None] == genre[None, :], 0.25, 0.03)
    X = sp.csr_matrix((rng.random((n_users, n_items)) < p).astype(np.float32))
    return X


def assert_same_recommendations(ids, scores, ref_ids, ref_scores, model_scores):
    """Equal up to the order of tied items: same scores, and each id scores what it claims."""
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ids >= 0, ref_ids >= 0)
    rows, cols = np.nonzero(ids >= 0)
    np.testing.assert_allclose(model_scores[rows, ids[rows, cols]], scores[rows, cols], rtol=1e-5, atol=1e-6)
    strict = scores > scores[:, -1:] + 1e-6  # items above the last score are the same set
    for r in range(ids.shape[0]):
        assert set(ids[r][strict[r]]) == set(ref_ids[r][strict[r]])


def models():
    out = [ItemKNN(neighbors=30)]
    if EASE is not None:
        out.append(EASE(l2=50.0))
    return out


@pytest.mark.parametrize("model", models(), ids=lambda m: type(m).__name__)
def test_item_item_index_equals_model_recommend(interactions, model):
    X = interactions
    model.fit(X, show_progress=False)
    index = ItemIndex.from_model(model)
    assert index.query_kind == "history" and index.kind == "exact"
    users = np.arange(0, 300, 3)
    ids, scores = index.search(X[users], 10, exclude=X[users])
    ref_ids, ref_scores = model.recommend(users, X[users], N=10)
    assert_same_recommendations(ids, scores, ref_ids, ref_scores, model.score(users, X[users]))
    banned = np.arange(0, 120, 7)
    ids, scores = index.search(X[users], 10, exclude=X[users], filter_items=banned)
    ref_ids, ref_scores = model.recommend(users, X[users], N=10, filter_items=banned)
    assert_same_recommendations(ids, scores, ref_ids, ref_scores, model.score(users, X[users]))


def test_embedding_index_equals_model_recommend(interactions):
    X = interactions
    model = ImplicitALS(factors=16, iterations=5).fit(X, show_progress=False)
    index = ItemIndex.from_model(model, kind="exact", device="cpu")
    users = np.arange(0, 300, 3)
    ids, scores = index.search(model.user_factors[users], 10, exclude=X[users])
    ref_ids, ref_scores = model.recommend(users, X[users], N=10)
    assert_same_recommendations(ids, scores, ref_ids, ref_scores, model.score(users, X[users]))


def test_a_service_calls_the_same_method_whatever_model(interactions):
    """recommend_users(external ids, k): the service never looks at the model kind."""
    X = interactions
    user_ids = np.arange(300) + 1000
    item_ids = np.array([f"item{i}" for i in range(120)])
    als = ImplicitALS(factors=16, iterations=5).fit(X, show_progress=False)
    knn = ItemKNN(neighbors=30).fit(X, show_progress=False)
    indices = [
        ItemIndex.from_model(als, device="cpu", item_ids=item_ids).attach_users(
            user_items=X, user_vectors=als.user_factors, user_ids=user_ids),
        ItemIndex.from_model(knn, item_ids=item_ids).attach_users(user_items=X, user_ids=user_ids),
    ]
    for index in indices:
        ids, scores = index.recommend_users([1000, 1299, "1005"], 5)
        assert ids.shape == (3, 5) and ids.dtype.kind == "U"
        seen = X[[0, 299, 5]]
        for r in range(3):
            assert not set(ids[r]) & set(item_ids[seen[r].indices])
        with pytest.raises(UnknownUserError, match="unknown user"):
            index.recommend_users([999], 5)
        with pytest.raises(UnknownUserError, match="integers"):
            index.recommend_users(["abc"], 5)


def test_item_item_bad_input(interactions):
    knn = ItemKNN(neighbors=5).fit(interactions, show_progress=False)
    index = ItemIndex.from_model(knn)
    with pytest.raises(TypeError, match="history rows"):
        index.search(np.zeros((1, 120), np.float32), 5)
    with pytest.raises(ValueError, match="exact"):
        ItemIndex.from_model(knn, kind="hnsw")
    with pytest.raises(ValueError, match="columns"):
        index.search(sp.csr_matrix((2, 7), dtype=np.float32), 5)
    with pytest.raises(Exception, match="user_items"):
        index.attach_users(user_vectors=np.zeros((3, 4), np.float32))
