"""Load test of the HTTP service: `recfb serve` (FastAPI/uvicorn) vs the old stdlib example.

    python benchmarks/serving_http.py                    # BPR on ml-100k, 20,000 requests per run
    python benchmarks/serving_http.py --requests 2000    # quick look

Both servers run as subprocesses on 127.0.0.1 (free ports), loading the same exported exact
index (BPR, 64 factors, ml-100k, users bundled). A bounded load generator (threads in this
process, one keep-alive ``http.client`` connection each, a fixed number of requests drawn
from a seeded user sequence) drives each server with 8 and 32 concurrent clients and reports
throughput, p50/p95/p99/max latency, errors (transport failures, non-200s, 5xx) and wrong
answers: every answer is compared with ``index.search`` run in this process (items exactly;
scores exactly for recfb serve, to the old example's 6 decimals for it).

Then: idle keep-alive connections (are they closed after the timeout?), a slow client
sending half a request (does the server still answer others, and drop it?), and a
schemathesis fuzz of the running service's OpenAPI schema (count of 5xx answers).

The load generator shares the machine with the server, so absolute figures are a floor.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

K = 10


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not come up")


def start(kind, index_dir, port, keep_alive):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kind == "recfb serve":
        cmd = [sys.executable, "-m", "recfb", "serve", "--index", str(index_dir), "--port", str(port),
               "--timeout-keep-alive", str(keep_alive)]
    else:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "serving_stdlib_baseline.py"), "--index", str(index_dir),
               "--port", str(port), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    wait_up(port, proc)
    return proc


def stop(proc):
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def peak_rss_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load(port, users, expected, n_clients, n_requests, exact_scores, seed=0):
    """``n_requests`` GETs from ``n_clients`` threads; returns latencies and error counts."""
    rng = np.random.default_rng(seed)
    picks = users[rng.integers(0, len(users), n_requests)]
    per = np.array_split(np.arange(n_requests), n_clients)
    lat = np.zeros(n_requests)
    counts = {"transport": 0, "non200": 0, "5xx": 0, "wrong": 0}
    lock = threading.Lock()

    def client(rows):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        bad = {"transport": 0, "non200": 0, "5xx": 0, "wrong": 0}
        for i in rows:
            user = int(picks[i])
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"/recommend?user={user}&k={K}")
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                bad["transport"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                lat[i] = time.perf_counter() - t0
                continue
            lat[i] = time.perf_counter() - t0
            if resp.status != 200:
                bad["non200"] += 1
                bad["5xx"] += resp.status >= 500
                continue
            got = json.loads(body)
            items, scores = expected[user]
            if got["items"] != items or (exact_scores and got["scores"] != scores) or \
                    (not exact_scores and not np.allclose(got["scores"], scores, atol=1e-6, rtol=0)):
                bad["wrong"] += 1
        conn.close()
        with lock:
            for key in counts:
                counts[key] += bad[key]

    threads = [threading.Thread(target=client, args=(rows,)) for rows in per]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return lat, wall, counts


def idle_connections(port, n=200, wait=3.0):
    """Open ``n`` connections that send nothing; after ``wait`` s, how many did the server close?"""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    time.sleep(wait)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return closed


def slow_client(port, wait=3.0):
    """Half a request held open: does another request still get answered, and is the half
    request dropped after ``wait`` s?"""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /recommend?user=1&k=5 HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/health")
    ok = c.getresponse().status == 200
    other = time.perf_counter() - t0
    time.sleep(wait)
    s.setblocking(False)
    try:
        dropped = s.recv(1024) == b""
    except BlockingIOError:
        dropped = False
    except OSError:
        dropped = True
    s.close()
    return ok, other, dropped


def fuzz(port, examples):
    try:
        import schemathesis
        from hypothesis import HealthCheck, given, settings
        from hypothesis.errors import Unsatisfiable
    except ImportError:
        return None
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    statuses, server_errors = {}, []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in schemathesis.GenerationMode:
            @given(case=op.as_strategy(mode))
            @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def run(case):
                r = case.call(base_url=f"http://127.0.0.1:{port}")
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code >= 500:
                    server_errors.append((case.method, case.path, case.query, case.body))
            with contextlib.suppress(Unsatisfiable):  # /health has no invalid form
                run()
    return statuses, server_errors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--keep-alive", type=float, default=2.0, help="recfb serve --timeout-keep-alive (s)")
    p.add_argument("--fuzz-examples", type=int, default=100)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)

    import torch

    from recfb import datasets
    from recfb.models import BPR
    from recfb.serving import ItemIndex, export
    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = datasets.load("ml-100k", data_dir=args.data_dir, download=False, quiet=True)
    t0 = time.perf_counter()
    model = BPR(factors=64, random_state=0).fit(ds.matrix, show_progress=False)
    log(f"BPR fit {time.perf_counter() - t0:.1f} s")
    tmp = Path(tempfile.mkdtemp(prefix="recfb-http-"))
    index_dir = tmp / "bpr.index"
    export(model, index_dir, kind="exact", user_items=ds.matrix, user_ids=ds.user_ids, item_ids=ds.item_ids)
    index = ItemIndex.load(index_dir, device="cpu")
    users = np.asarray(ds.user_ids)
    ids, scores = index.search(index.users.user_vectors, K, exclude=index.users.user_items, ids="external")
    expected = {int(u): ([x.item() for x in ids[r][scores[r] > -np.inf]], [float(s) for s in scores[r][scores[r] > -np.inf]])
                for r, u in enumerate(users.tolist())}
    torch.set_num_threads(1)  # the load generator's own process stays light

    out = ["# HTTP service under load: `recfb serve` vs the old stdlib example\n",
           f"`python benchmarks/serving_http.py {' '.join(argv or sys.argv[1:])}` on "
           f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores "
           f"(load average at start {os.getloadavg()[0]:.1f}), Python {platform.python_version()}; BPR (64 factors) "
           f"on ml-100k ({len(users)} users, {index.n_items} items), exact index, k={K}, "
           f"{args.requests:,} requests per row, client threads in the benchmark process.\n",
           "| server | clients | throughput req/s | p50 ms | p95 ms | p99 ms | max ms | transport errors | non-200 | "
           "5xx | wrong answers | server peak RSS MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    extra = []
    for kind in ("recfb serve", "stdlib example"):
        port = free_port()
        proc = start(kind, index_dir, port, args.keep_alive)
        try:
            load(port, users, expected, 4, 400, kind == "recfb serve", seed=99)  # warm-up
            for n_clients in args.clients:
                lat, wall, c = load(port, users, expected, n_clients, args.requests, kind == "recfb serve")
                ms = np.percentile(lat, [50, 95, 99]) * 1000
                out.append(f"| {kind} | {n_clients} | {args.requests / wall:,.0f} | {ms[0]:.1f} | {ms[1]:.1f} | "
                           f"{ms[2]:.1f} | {lat.max() * 1000:.0f} | {c['transport']} | {c['non200']} | {c['5xx']} | "
                           f"{c['wrong']} | {peak_rss_mb(proc.pid):,.0f} |")
                log(out[-1])
            closed = idle_connections(port, 200, args.keep_alive + 1.5)
            ok, other, dropped = slow_client(port, args.keep_alive + 1.5)
            extra.append(f"| {kind} | {closed} / 200 | {'yes' if ok else 'no'} ({other * 1000:.0f} ms) | "
                         f"{'yes' if dropped else 'no'} |")
            log(extra[-1])
            if kind == "recfb serve":
                fz = fuzz(port, args.fuzz_examples)
        finally:
            stop(proc)
    out += ["", f"Abuse (recfb serve with --timeout-keep-alive {args.keep_alive}; checked {args.keep_alive + 1.5} s "
                "after opening):\n",
            "| server | idle connections closed | other request answered while a half request is open | "
            "half request dropped |", "|---|---|---|---|", *extra, ""]
    if fz is None:
        out.append("schemathesis is not installed: no fuzz run.\n")
    else:
        statuses, errors = fz
        out.append(f"schemathesis fuzz of /openapi.json (positive and negative cases, {args.fuzz_examples} "
                   f"examples per operation and mode): {sum(statuses.values())} requests, statuses "
                   f"{dict(sorted(statuses.items()))}, **{len(errors)} server errors**.\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
