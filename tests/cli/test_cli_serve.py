"""`recfb serve` as a real process on a free port (stopped by its PID), its argument checks,
and `recfb export --target-recall` calibrating the exported index."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.cli.main import main as recfb_main
from recfb.models import ImplicitALS
from recfb.serving import ItemIndex, export

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((60, 40)) < 0.2).astype(np.float32))
    model = ImplicitALS(factors=8, iterations=3).fit(X, show_progress=False)
    d = tmp_path_factory.mktemp("serve")
    export(model, d / "als.index", kind="exact", user_items=X, user_ids=np.arange(60) + 1000)
    model.save(d / "als.npz")
    return d, X, model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_recfb_serve_runs_answers_and_stops_by_pid(exported):
    d, X, model = exported
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "recfb", "serve", "--index", str(d / "als.index"),
                             "--port", str(port), "--timeout-keep-alive", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, health = _get(base + "/health", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.poll() is not None else ""
                    pytest.fail(f"recfb serve did not come up (exit {proc.poll()}): {out}")
                time.sleep(0.3)
        assert status == 200 and health["n_users"] == 60 and health["kind"] == "exact"
        status, body = _get(base + "/recommend?user=1003&k=5")
        expected, _ = ItemIndex.load(d / "als.index").recommend_users([1003], 5, ids="internal")
        assert status == 200 and body["items"] == expected[0].tolist()
        assert not set(X[3].indices) & set(body["items"])
        assert _get(base + "/recommend?user=1003&k=1001")[0] == 422  # default --max-k 1000
        assert _get(base + "/recommend?user=" + "9" * 30)[0] == 400
        # a connection that sends nothing, and one that stalls in its headers, are closed
        # after --timeout-keep-alive (2 s) while other requests are answered
        idle = socket.create_connection(("127.0.0.1", port), timeout=15)
        half = socket.create_connection(("127.0.0.1", port), timeout=15)
        half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        assert _get(base + "/health")[0] == 200
        assert idle.recv(1) == b"" and half.recv(1) == b""
        assert 1.0 < time.monotonic() - t0 < 12
        idle.close()
        half.close()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode in (0, -signal.SIGTERM)


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port == 70000"),
    (["--workers", "0"], "--workers == 0"),
    (["--max-k", "0"], "--max-k == 0"),
    (["--timeout-keep-alive", "0"], "--timeout-keep-alive"),
])
def test_serve_refuses_bad_arguments_before_starting(exported, capsys, args, message):
    d, _, _ = exported
    assert recfb_main(["serve", "--index", str(d / "als.index"), *args]) == 2
    assert message in capsys.readouterr().err


def test_serve_refuses_an_index_without_users_or_a_missing_one(exported, tmp_path, capsys):
    d, _, model = exported
    ItemIndex.from_model(model, device="cpu").save(tmp_path / "bare")
    assert recfb_main(["serve", "--index", str(tmp_path / "bare")]) == 2
    assert "no users" in capsys.readouterr().err
    assert recfb_main(["serve", "--index", str(tmp_path / "nothing")]) == 2
    assert "no such index" in capsys.readouterr().err


def test_export_target_recall_calibrates_and_stores_it(exported, tmp_path, capsys):
    d, _, model = exported
    out = tmp_path / "hnsw.index"
    assert recfb_main(["export", "--model", str(d / "als.npz"), "-o", str(out), "--kind", "hnsw", "--no-users",
                       "--target-recall", "0.9", "--param", "M=4"]) == 0
    assert "calibrated efSearch=" in capsys.readouterr().out
    idx = ItemIndex.load(out)
    cal = idx.calibration
    assert cal["target_recall"] == 0.9 and cal["efSearch"] == idx.params["efSearch"] and idx.params["M"] >= 4
    assert json.loads((out / "metadata.json").read_text())["calibration"]["recall"] == cal["recall"]
    assert recfb_main(["export", "--model", str(d / "als.npz"), "-o", str(tmp_path / "x"), "--kind", "exact",
                       "--no-users", "--target-recall", "0.9"]) == 2
    assert "approximate index" in capsys.readouterr().err
