"""Start ``world_size`` local gloo processes (torch.multiprocessing, spawn) for the distributed tests.

Each child gets the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), builds its Comm with ``get_comm(True)`` (so the set-up path under test is the
one torchrun users take) and runs ``target(comm, outdir)``; results come back as files in
``outdir``. A child that hangs is killed after ``timeout`` seconds instead of hanging pytest.
"""
from __future__ import annotations

import os
import socket
import time

import numpy as np

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, target, world_size, port, outdir):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch

    torch.set_num_threads(1)
    from recfb.distributed import get_comm

    comm = get_comm(True, backend="gloo", timeout_s=120)
    try:
        target(comm, outdir)
    finally:
        comm.close()


def run_ranks(target, world_size: int, outdir, timeout: float = 300.0) -> None:
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_entry, args=(target, world_size, free_port(), str(outdir)), nprocs=world_size,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError(f"{world_size} ranks of {target.__name__} did not finish in {timeout:.0f} s")


def write_parquet_log(folder):
    """A log in 3 files x 2 row groups, string user ids and int item ids, in sorted path order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    folder.mkdir()
    (folder / "part-b").mkdir()
    paths = [folder / "part-a.parquet", folder / "part-b" / "x.parquet", folder / "part-c.parquet"]
    for j, path in enumerate(paths):
        n = 9 + 4 * j
        table = pa.table({"user": np.array([f"u{v}" for v in rng.integers(0, 12 + 5 * j, n)]),
                          "item": rng.integers(100, 120 + 10 * j, n),
                          "value": rng.integers(1, 5, n).astype(np.float32)})
        pq.write_table(table, path, row_group_size=(n + 1) // 2)
    return paths


def results_of(rank_results, name):
    results, _ = rank_results
    for r, res in enumerate(results[name]):
        assert str(res["error"]) == "", f"rank {r} failed in check {name!r}:\n{res['error']}"
    return results[name]
