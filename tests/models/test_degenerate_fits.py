"""Degenerate fits are refused clearly (issue 15, part 4); service ids out of range are 4xx
(part 6)."""

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.models import BPR, CML, EASE, MF, LightGCN
from recfb.serving import ItemIndex
from recfb.serving.users import UnknownUserError
from recfb.utils.errors import DataError


def matrix(value=1.0, seed=0):
    X = sp.random(40, 15, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    X.data[:] = value
    return X


@pytest.mark.parametrize("kw", [{}, {"method": "sparse"}])
def test_ease_on_weights_around_1e20_names_the_overflow(kw):
    # before: fit "succeeded" with NaN weights and every recommendation list came back empty
    with pytest.raises(DataError, match=r"Gram matrix X\^T X overflows float32.*Rescale the weights"):
        EASE(**kw).fit(matrix(1e20), show_progress=False)


def test_ease_float64_takes_what_float32_cannot():
    m = EASE(dtype="float64").fit(matrix(1e20), show_progress=False)
    assert np.isfinite(m.weights_).all()
    ids, scores = m.recommend(0, matrix(1e20)[0], N=3)
    assert ids.size == 3 and np.isfinite(scores).all()


@pytest.mark.parametrize("make", [
    lambda: BPR(iterations=1, factors=4), lambda: MF(loss="bce", iterations=1, factors=4),
    lambda: CML(iterations=1, factors=4), lambda: LightGCN(iterations=1, factors=4),
])
def test_a_matrix_of_stored_zeros_fits_no_embedding_model(make):
    pytest.importorskip("torch_geometric") if make().__class__.__name__ == "LightGCN" else None
    with pytest.raises(DataError, match="180 stored entries but all are zero"):
        make().fit(matrix(0.0), show_progress=False)
    with pytest.raises(DataError, match="all are zero"):
        make().fit(matrix(0.0), show_progress=False, sample_weight=np.ones(180))


@pytest.fixture(scope="module")
def index():
    from recfb.models import ItemKNN
    X = matrix()
    knn = ItemKNN(neighbors=3).fit(X, show_progress=False)
    return ItemIndex.from_model(knn, item_ids=np.arange(15) + 1000).attach_users(user_items=X, user_ids=np.arange(40) + 100)


@pytest.mark.parametrize("user", [10**30, str(10**30), -(10**30), "1.5", 2.5, None, True, np.uint64(2**64 - 1)])
def test_out_of_range_or_ill_typed_user_ids_are_unknown_users(index, user):
    with pytest.raises(UnknownUserError, match="unknown user"):
        index.recommend_users([user], k=2, ids="external")


def test_service_answers_404_not_500_for_a_huge_user_id(index, tmp_path):
    """The service (recfb.serving.app, what `recfb serve` runs; the stdlib example it replaced
    is now a client) answers ids that overflow with a 4xx naming the problem, never a 500."""
    from fastapi.testclient import TestClient

    from recfb.serving.app import create_app
    client = TestClient(create_app(index, max_k=10))
    for user in (str(10**30), "1e400", "-99999999999999999999"):
        resp = client.get(f"/recommend?user={user}&k=2")
        assert 400 <= resp.status_code < 500, (user, resp.status_code, resp.text)
        assert resp.json().get("field") == "user", resp.json()
    assert client.get("/recommend?user=105&k=2").status_code == 200
