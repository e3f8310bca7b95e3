"""The HTTP service (recfb.serving.app) through FastAPI's TestClient: answers equal the index's
own, seen items never come back, every client mistake is a 4xx naming the field, a server
fault is a logged 500, and a schemathesis fuzz of the OpenAPI schema finds no 5xx."""
import itertools
import logging

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from recfb.models import ImplicitALS, ItemKNN  # noqa: E402
from recfb.serving import ItemIndex  # noqa: E402
from recfb.serving.app import create_app  # noqa: E402

N_USERS, N_ITEMS = 50, 30


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    dense = (rng.random((N_USERS, N_ITEMS)) < 0.2).astype(np.float32)
    dense[7] = 0
    dense[7, :28] = 1  # user 107 has seen all but two items
    X = sp.csr_matrix(dense)
    model = ImplicitALS(factors=8, iterations=3).fit(X, show_progress=False)
    return X, model


@pytest.fixture(scope="module")
def index(data):
    X, model = data
    idx = ItemIndex.from_model(model, kind="exact", device="cpu", item_ids=np.array([f"item-{i}" for i in range(N_ITEMS)]))
    return idx.attach_users(user_items=X, user_vectors=model.user_factors, user_ids=np.arange(N_USERS) + 100)


@pytest.fixture(scope="module")
def client(index):
    return TestClient(create_app(index, max_k=100, max_batch=8, max_body_bytes=4096), raise_server_exceptions=False)


def _expected(data, user_row, k, extra=(), banned=()):
    """Brute force: scores of every item, seen/extra/banned removed, best first."""
    X, model = data
    s = model.user_factors[user_row].astype(np.float64) @ model.item_factors.T.astype(np.float64)
    drop = set(X[user_row].indices) | set(extra) | set(banned)
    order = [i for i in np.argsort(-s, kind="stable") if i not in drop][:k]
    return [f"item-{i}" for i in order], s[order]


def test_get_recommend_equals_brute_force_and_never_returns_seen(client, data):
    for row in (0, 3, 19, 49):
        r = client.get(f"/recommend?user={100 + row}&k=5")
        assert r.status_code == 200
        body = r.json()
        items, scores = _expected(data, row, 5)
        assert body["user"] == 100 + row and body["k"] == 5
        assert body["items"] == items
        np.testing.assert_allclose(body["scores"], scores, rtol=1e-5, atol=1e-6)
        assert not {f"item-{i}" for i in data[0][row].indices} & set(body["items"])


def test_short_lists_are_not_padded(client):
    body = client.get("/recommend?user=107&k=50").json()  # k > eligible items (2)
    assert body["items"] == ["item-28", "item-29"] or sorted(body["items"]) == ["item-28", "item-29"]
    assert len(body["scores"]) == 2


def test_post_batch_with_exclusions_and_filter(client, data):
    payload = {"users": [103, "104", 110], "k": 4, "exclude": [["item-1", "item-5"], [], ["item-0"]],
               "filter_items": ["item-2", "item-8"]}
    r = client.post("/recommend", json=payload)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res["user"] for res in results] == [103, 104, 110]
    for res, row, extra in zip(results, (3, 4, 10), ([1, 5], [], [0])):
        items, scores = _expected(data, row, 4, extra=extra, banned=(2, 8))
        assert res["items"] == items
        np.testing.assert_allclose(res["scores"], scores, rtol=1e-5, atol=1e-6)


def test_similar_equals_brute_force(client, data):
    _, model = data
    V = model.item_factors.astype(np.float64)
    body = client.get("/similar?item=item-3&k=4").json()
    s = V @ V[3]
    s[3] = -np.inf
    assert body["item"] == "item-3"
    assert body["items"] == [f"item-{i}" for i in np.argsort(-s, kind="stable")[:4]]


def test_similar_on_an_item_item_index(data):
    X, _ = data
    knn = ItemKNN(neighbors=10).fit(X)
    idx = ItemIndex.from_model(knn).attach_users(user_items=X)
    c = TestClient(create_app(idx), raise_server_exceptions=False)
    body = c.get("/similar?item=4&k=3").json()
    row = knn.similarity_[4].toarray().ravel().astype(np.float64)
    row[4] = -np.inf
    assert body["items"] == list(np.argsort(-row, kind="stable")[:3])
    assert c.get("/recommend?user=0&k=3").status_code == 200
    assert c.get("/recommend?user=50").status_code == 404  # internal ids 0..49
    assert c.get("/recommend?user=-1").status_code == 404


@pytest.mark.parametrize("url, status, field", [
    ("/recommend?k=5", 400, "user"),                                   # missing
    ("/recommend?user=103&user=104", 400, "user"),                     # duplicated
    ("/recommend?user=103&k=3&k=4", 400, "k"),
    ("/recommend?user=103&kk=1", 400, "kk"),                           # unknown parameter
    ("/recommend?user=abc", 400, "user"),                              # does not parse
    ("/recommend?user=1e3", 400, "user"),
    ("/recommend?user=" + "9" * 30, 400, "user"),                      # overflows int64
    ("/recommend?user=" + "9" * 300, 422, "user"),                     # longer than any id
    ("/recommend?user=5", 404, "user"),                                # unknown
    ("/recommend?user=103&k=0", 422, "k"),
    ("/recommend?user=103&k=101", 422, "k"),                           # above max_k
    ("/recommend?user=103&k=x", 422, "k"),
    ("/recommend?user=103&k=" + "9" * 40, 422, "k"),
    ("/similar?item=zz", 404, "item"),
    ("/similar?k=3", 400, "item"),
    ("/health?x=1", 400, "x"),
    ("/nope", 404, None),
])
def test_get_mistakes_are_4xx_naming_the_field(client, url, status, field):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["error"]


@pytest.mark.parametrize("body, status, field", [
    (b'{"users": [103], "users": [104]}', 400, "users"),               # duplicated key
    (b'{"users": [103]', 400, "body"),                                 # not JSON
    (b'{"users": [NaN]}', 400, "body"),
    (b'[1, 2]', 422, "body"),
    (b'{}', 422, "users"),
    (b'{"users": []}', 422, "users"),
    (b'{"users": [1,2,3,4,5,6,7,8,9]}', 422, "users"),                 # above max_batch
    (b'{"users": [true]}', 422, "users[0]"),
    (b'{"users": [1.5]}', 422, "users[0]"),
    (b'{"users": [103], "k": "3"}', 422, "k"),
    (b'{"users": [103], "k": 0}', 422, "k"),
    (b'{"users": [103], "zz": 1}', 422, "zz"),
    (b'{"users": [1000000000000000000000000000000]}', 400, "users[0]"),
    (b'{"users": [103, 999]}', 404, "users[1]"),
    (b'{"users": [103], "exclude": [[], []]}', 422, "exclude"),
    (b'{"users": [103], "exclude": [["nope"]]}', 404, "exclude[0][0]"),
    (b'{"users": [103], "filter_items": ["item-1", "x"]}', 404, "filter_items[1]"),
])
def test_post_mistakes_are_4xx_naming_the_field(client, body, status, field):
    r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field


def test_oversized_bodies_and_wrong_methods(client):
    r = client.post("/recommend", content=b" " * 5000)
    assert r.status_code == 413 and r.json()["field"] == "body"

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(10):
            yield b" " * 1000
    r = client.post("/recommend", content=chunks())
    assert r.status_code == 413
    r = client.post("/health")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert client.delete("/recommend").status_code == 405


def test_a_server_fault_is_a_logged_500(index, caplog, monkeypatch):
    c = TestClient(create_app(index), raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(index, "search", broken)
    with caplog.at_level(logging.ERROR, logger="recfb.serving.app"):
        r = c.get("/recommend?user=103")
    assert r.status_code == 500 and "disk on fire" not in r.text
    record = next(rec for rec in caplog.records if rec.name == "recfb.serving.app")
    assert record.exc_info and "disk on fire" in str(record.exc_info[1])


def test_health_reports_the_index_and_its_calibration(client, data):
    body = client.get("/health").json()
    assert body["kind"] == "exact" and body["n_items"] == N_ITEMS and body["n_users"] == N_USERS
    assert body["calibration"] is None and body["version"]
    X, model = data
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 8)).astype(np.float32)
    idx = ItemIndex.from_vectors(vectors, kind="hnsw", device="cpu", target_recall=0.9,
                                 queries=rng.standard_normal((100, 8)).astype(np.float32), M=8)
    idx.attach_users(user_vectors=rng.standard_normal((5, 8)).astype(np.float32))
    cal = TestClient(create_app(idx)).get("/health").json()["calibration"]
    assert cal["target_recall"] == 0.9 and cal["efSearch"] == idx.params["efSearch"] and cal["recall"] > 0


def test_create_app_refuses_bad_arguments(index, data):
    X, model = data
    with pytest.raises(ValueError, match="no users"):
        create_app(ItemIndex.from_model(model, device="cpu"))
    with pytest.raises(ValueError, match="max_k"):
        create_app(index, max_k=0)
    with pytest.raises(TypeError, match="ItemIndex"):
        create_app(model)


def test_openapi_schema_fuzz_finds_no_server_error(index):
    """schemathesis generates requests from /openapi.json (valid and invalid ones); none may
    get a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    app = create_app(index, max_k=100, max_batch=8)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    calls, failures = [], []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):  # valid and invalid

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call()
            calls.append((case.method, case.path, response.status_code))
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.query, case.body, response.text))
        try:
            run()
        except Unsatisfiable:  # an operation without parameters (/health) has no invalid form
            assert mode == schemathesis.GenerationMode.NEGATIVE
    assert {(m, p) for m, p, _ in calls} >= {("GET", "/recommend"), ("POST", "/recommend"), ("GET", "/similar"),
                                             ("GET", "/health")}
    statuses = {status for _, _, status in calls}
    assert len(calls) >= 60 and 200 in statuses and statuses & {400, 404, 422}
    assert not failures, failures[:3]


def test_the_example_client_against_the_app(index, data):
    """examples/service.py (a thin client) works on any httpx client, TestClient included."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "examples" / "service.py"
    spec = importlib.util.spec_from_file_location("recfb_example_client", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    c = TestClient(create_app(index), raise_server_exceptions=False)
    assert example.recommend(c, 103, 3)["items"] == _expected(data, 3, 3)[0]
    rows = example.recommend_many(c, [103, 104], 3, exclude=[["item-5"], []])
    assert rows[0]["items"] == _expected(data, 3, 3, extra=[5])[0]
    assert example.health(c)["n_users"] == N_USERS
    with pytest.raises(example.ServiceError, match="unknown user") as err:
        example.recommend(c, 5, 3)
    assert err.value.status == 404 and err.value.field == "user"
