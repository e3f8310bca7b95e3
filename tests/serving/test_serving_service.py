"""The example HTTP service: good and malformed requests, status codes, JSON bodies."""
import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.models import ImplicitALS
from recfb.serving import export

SERVICE = Path(__file__).resolve().parents[2] / "examples" / "service.py"


def _load_service_module():
    spec = importlib.util.spec_from_file_location("recfb_example_service", SERVICE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    rng = np.random.default_rng(0)
    dense = (rng.random((50, 30)) < 0.2).astype(np.float32)
    dense[7] = 0
    dense[7, :28] = 1  # user 107 has seen all but two items
    X = sp.csr_matrix(dense)
    model = ImplicitALS(factors=8, iterations=3).fit(X, show_progress=False)
    path = tmp_path_factory.mktemp("svc") / "als.index"
    export(model, path, kind="exact", user_items=X, user_ids=np.arange(50) + 100,
           item_ids=np.array([f"item-{i}" for i in range(30)]))
    return path, X


def get(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_service_answers_and_rejects(exported):
    path, X = exported
    service = _load_service_module()
    from recfb.serving import ItemIndex
    server = service.make_server(ItemIndex.load(path), port=0, max_k=100, quiet=True)
    thread = service.serve_in_thread(server)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body = get(base, "/recommend?user=103&k=5")
        assert status == 200 and body["user"] == "103" and body["k"] == 5 and len(body["items"]) == 5
        seen = {f"item-{i}" for i in X[3].indices}
        assert not seen & set(body["items"]) and body["scores"] == sorted(body["scores"], reverse=True)
        assert get(base, "/recommend?user=103")[1]["k"] == 10  # default k
        status, body = get(base, "/recommend?user=107&k=10")
        assert status == 200 and sorted(body["items"]) == ["item-28", "item-29"]  # shorter list, no padding
        status, body = get(base, "/recommend?user=103&k=100")  # above the catalogue: all eligible items
        assert status == 200 and len(body["items"]) == 30 - X[3].nnz
        assert get(base, "/health")[1]["n_users"] == 50
        for query, code, msg in [("user=99999&k=5", 404, "unknown user"),
                                 ("user=abc&k=5", 404, "unknown user"),
                                 ("user=103&k=0", 400, "k == 0"),
                                 ("user=103&k=-4", 400, "k == -4"),
                                 ("user=103&k=abc", 400, "must be an integer"),
                                 ("user=103&k=2.5", 400, "must be an integer"),
                                 ("user=103&k=10000000000000000000000", 400, "must be <= 100"),
                                 ("k=5", 400, "missing query parameter 'user'"),
                                 ("user=103&user=104", 400, "given 2 times")]:
            status, body = get(base, "/recommend?" + query)
            assert status == code and msg in body["error"], (query, status, body)
        status, body = get(base, "/nothing")
        assert status == 404 and "error" in body
        req = urllib.request.Request(base + "/recommend?user=103", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 405
        assert get(base, "/recommend?user=104&k=3")[0] == 200  # still serving after bad requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert not thread.is_alive()


def test_service_script_runs_as_a_process(exported):
    path, _ = exported
    proc = subprocess.Popen([sys.executable, str(SERVICE), "--index", str(path), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving" in line, proc.stderr.read() if proc.poll() is not None else line
        base = line.split(" on ")[1].rsplit("/recommend", 1)[0]
        status, body = get(base, "/recommend?user=120&k=3")
        assert status == 200 and len(body["items"]) == 3
    finally:
        proc.terminate()
        proc.wait(10)
