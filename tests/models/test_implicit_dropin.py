"""recfb as a drop-in for implicit: the API gaps that implicit's own shared recommender tests
(benfred/implicit, tests/recommender_base_test.py) found, each checked here against known
answers on the checkerboard (users and items of the same parity like each other)."""
import io
import pickle

import numpy as np
import pytest

from recfb.models import BPR, CML, EASE, MF, ItemKNN, LightGCN
from recfb.testing import checkerboard, checkerboard_holdout
from recfb.utils.errors import DataError, UnknownIdError

N_USERS = 40


def _fit(cls, **kw):
    X = checkerboard(N_USERS)
    params = dict(factors=8, iterations=30, random_state=0, device="cpu")
    params.update(kw)
    return cls(**params).fit(X, show_progress=False), X


@pytest.fixture(scope="module")
def mf():
    return _fit(MF)


@pytest.fixture(scope="module")
def cml():
    return _fit(CML)


def test_similar_users_single_and_batch(mf, cml):
    for model, _ in (mf, cml):
        for u in (0, 7):
            ids, scores = model.similar_users(u, N=10)
            assert ids.shape == (10,) and ids[0] == u
            assert np.all(ids % 2 == u % 2)  # the same taste group
            assert np.all(np.diff(scores) <= 0)
        users = np.arange(12)
        ids, scores = model.similar_users(users, N=10)
        assert ids.shape == (12, 10) and scores.shape == (12, 10)
        np.testing.assert_array_equal(ids[:, 0], users)
        assert np.all(ids % 2 == (users % 2)[:, None])
        for u in (0, 7):  # the batch rows are the single answers
            np.testing.assert_array_equal(ids[u], model.similar_users(u, N=10)[0])
    model = mf[0]
    ids, scores = model.similar_users(3, N=10)
    np.testing.assert_allclose(scores[0], 1.0, atol=1e-5)  # cosine of itself
    ids, _ = model.similar_users(np.arange(10), N=10, filter_users=np.arange(0, N_USERS, 5))
    assert not np.any((ids >= 0) & (ids % 5 == 0))
    ids, _ = model.similar_users(np.arange(10), N=10, users=np.arange(6))
    assert all(set(row) == set(range(6)) for row in ids)


def test_item_item_models_have_no_similar_users():
    X = checkerboard(20)
    for model in (EASE(l2=1.0).fit(X), ItemKNN(neighbors=5).fit(X, show_progress=False)):
        with pytest.raises(NotImplementedError):
            model.similar_users(0)


def test_similar_items_takes_implicits_positional_order(mf):
    model = mf[0]
    # similar_items(itemid, N, recalculate_item, item_users, filter_items, items)
    ids, _ = model.similar_items(4, 6, False, None, [2, 6])
    assert ids[0] == 4 and not {2, 6} & set(ids) and np.all(ids % 2 == 0)
    ids, _ = model.similar_items(4, 10, False, None, None, [1, 2, 3, 4])
    assert set(ids) == {1, 2, 3, 4} and ids[0] == 4
    batch, _ = model.similar_items(np.arange(6), 5, False, None, [0])
    assert batch.shape == (6, 5) and not np.any(batch == 0)
    with pytest.raises(NotImplementedError):
        model.similar_items(4, 5, True, X_row := checkerboard(N_USERS).T.tocsr()[4])
    assert X_row.shape[0] == 1


def test_recommend_items_returns_liked_candidates_last_with_minus_inf(mf):
    model, X = mf
    candidates = np.array([1, 2, 3, 4, 5, 6])  # user 0 likes the even ones
    ids, scores = model.recommend(0, X[0], N=20, items=candidates)
    assert len(ids) == 6 and set(ids) == set(candidates)
    assert set(ids[3:]) == {2, 4, 6} and np.all(np.isneginf(scores[3:]))
    assert np.all(np.isfinite(scores[:3])) and np.all(np.diff(scores[:3]) <= 0)
    ids, scores = model.recommend(np.arange(4), X[:4], N=6, items=candidates)
    assert ids.shape == (4, 6) and all(set(r) == set(candidates) for r in ids)
    for u in range(4):
        liked = set(candidates[X[u].toarray()[0, candidates] > 0])
        assert set(ids[u][np.isneginf(scores[u])]) == liked
    # filter_items still removes candidates outright
    ids, _ = model.recommend(0, X[0], N=20, items=candidates, filter_items=[1, 2])
    assert set(ids) == {3, 4, 5, 6}


def test_fit_accepts_implicits_callback():
    calls = []
    X = checkerboard(20)
    MF(factors=4, iterations=3, random_state=0, device="cpu").fit(
        X, show_progress=False, callback=lambda epoch, seconds, loss: calls.append((epoch, seconds, loss)))
    assert [c[0] for c in calls] == [1, 2, 3]
    assert all(s >= 0 and np.isfinite(loss) for _, s, loss in calls)
    both = []
    MF(factors=4, iterations=2, random_state=0, device="cpu").fit(
        X, show_progress=False, callback=lambda *a: both.append("implicit"),
        callbacks=[lambda epoch, logs: both.append("recfb")])
    assert both.count("implicit") == 2 and both.count("recfb") == 2


def test_save_to_a_file_object_and_class_load(mf):
    model, X = mf
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    back = MF.load(buf)
    np.testing.assert_array_equal(back.recommend(np.arange(5), X[:5])[0], model.recommend(np.arange(5), X[:5])[0])


def test_lightgcn_pickles():
    X = checkerboard_holdout(20)[0]
    model = LightGCN(factors=8, iterations=2, random_state=0, device="cpu").fit(X, show_progress=False)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.item_factors, model.item_factors)
    np.testing.assert_array_equal(back.recommend(np.arange(5), X[:5])[1], model.recommend(np.arange(5), X[:5])[1])


@pytest.mark.parametrize("make", [lambda: _fit(BPR, iterations=2), lambda: (EASE(l2=1.0).fit(checkerboard(N_USERS)),
                                                                         checkerboard(N_USERS))])
def test_out_of_range_ids_are_index_errors_and_data_errors(make):
    model, X = make()
    calls = [
        lambda: model.recommend(0, X[0], items=[1, 2, -1]),
        lambda: model.recommend(0, X[0], items=[1, N_USERS]),
        lambda: model.recommend(0, X[0], filter_items=[10**6]),
        lambda: model.similar_items(N_USERS),
        lambda: model.similar_items(-1),
        lambda: model.score([0], X[:1], items=[N_USERS + 3]),
        lambda: model.recommend(-1, X[0]),
    ]
    if getattr(model, "needs_fitted_users", False):
        calls.append(lambda: model.recommend(N_USERS, X[0]))
        calls.append(lambda: model.similar_users(N_USERS))
    for call in calls:
        with pytest.raises(IndexError) as info:
            call()
        assert isinstance(info.value, (UnknownIdError, DataError))


def test_each_query_is_its_own_nearest_neighbour_even_among_identical_vectors():
    """implicit's convention, kept when other rows tie exactly (identical vectors): the query
    ranks first with its own score (cosine exactly 1; 0 for distance models)."""
    m, _ = _fit(BPR)
    m.item_factors[[4, 7, 9]] = m.item_factors[2]
    m.user_factors[[1, 5]] = m.user_factors[3]
    for q in (4, 7, 9, 2):
        ids, scores = m.similar_items(q, N=4)
        assert ids[0] == q and scores[0] == 1.0 and set(ids) == {2, 4, 7, 9}
    ids, scores = m.similar_users(np.array([1, 5, 3]), N=3)
    assert list(ids[:, 0]) == [1, 5, 3] and np.all(scores[:, 0] == 1.0)
    ids, _ = m.similar_items(4, N=3, filter_items=[4])
    assert 4 not in ids
    c, _ = _fit(CML)
    c.user_factors[[1, 5]] = c.user_factors[3]
    ids, scores = c.similar_users(np.array([1, 5, 3]), N=3)
    assert list(ids[:, 0]) == [1, 5, 3] and np.all(scores[:, 0] == 0.0)
