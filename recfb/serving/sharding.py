"""Scale-out: a catalogue split into item shards, searched in parallel and merged by score.

Each shard is an ordinary :class:`ItemIndex` over a contiguous range of items (``shard``
metadata gives its offset), saved and loaded on its own. A :class:`ShardedIndex` merges
shards held in this process or by :class:`ShardWorker` processes (one per shard, e.g. one
per machine's memory), so a catalogue larger than one process's memory can be served.

Because every shard returns its own exact (or approximate) top-k with exclusions applied in
its id range, the merged top-k equals the unsharded one for exact shards.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from recfb.serving import _inputs
from recfb.serving.index import ItemIndex
from recfb.utils import errors
from recfb.utils.topk import merge_topk_rows


def build_shards(item_vectors, n_shards: int, metric: str = "ip", kind: str = "exact", item_ids=None,
                 device: str = "auto", **index_params) -> list[ItemIndex]:
    """Split ``item_vectors`` into ``n_shards`` contiguous ranges and index each one."""
    vectors = np.asarray(item_vectors)
    n = vectors.shape[0]
    if not 1 <= n_shards <= n:
        raise ValueError(f"n_shards == {n_shards}, must be in 1..{n} (the number of items).")
    bounds = np.linspace(0, n, n_shards + 1).round().astype(int)
    ids = None if item_ids is None else np.asarray(item_ids)
    shards = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        shard = ItemIndex.from_vectors(vectors[lo:hi], metric=metric, kind=kind, device=device,
                                       item_ids=None if ids is None else ids[lo:hi], **index_params)
        shard.shard = {"offset": int(lo), "n_items_total": int(n), "index": i, "count": int(n_shards)}
        shards.append(shard)
    return shards


def split_index(index: ItemIndex, n_shards: int) -> list[ItemIndex]:
    """Shards of an embedding index with the same kind and parameters (rebuilt per range)."""
    if index.query_kind != "vector" or index._vectors is None:
        raise ValueError("only embedding indices that keep their vectors (exact, hnsw) can be split; "
                         "build IVF shards from the original vectors with build_shards().")
    params = {k: v for k, v in index.params.items() if k in ("M", "efConstruction", "efSearch")}
    return build_shards(index._vectors, n_shards, index.metric, index.kind, index.item_ids, index.device, **params)


class ShardedIndex:
    """Search several item shards (ItemIndex or ShardWorker) as one catalogue.

    Queries go to every shard at once (threads; the work itself runs in faiss/torch or in the
    worker processes), each shard's exclusions and filters are cut to its range, and the
    per-shard top-k lists are merged by score. Same interface and results as ItemIndex.search.
    """

    def __init__(self, shards):
        shards = sorted(shards, key=lambda s: s.shard["offset"] if s.shard else -1)
        if not shards or any(s.shard is None for s in shards):
            raise ValueError("ShardedIndex needs shards built by build_shards()/split_index() (with shard metadata).")
        offset = 0
        for s in shards:
            if s.shard["offset"] != offset or s.shard["n_items_total"] != shards[0].shard["n_items_total"]:
                raise ValueError(f"shards do not tile the catalogue: expected offset {offset}, got {s.shard}.")
            offset += s.n_items
        if offset != shards[0].shard["n_items_total"]:
            raise ValueError(f"shards cover {offset} of {shards[0].shard['n_items_total']} items.")
        first = shards[0]
        for s in shards[1:]:
            if (s.metric, s.dim, s.query_kind) != (first.metric, first.dim, first.query_kind):
                raise ValueError("shards disagree on metric, dimension or query kind.")
        if first.query_kind != "vector":
            raise ValueError("only embedding indices can be sharded.")
        self.shards = shards
        self.metric, self.dim, self.query_kind = first.metric, first.dim, first.query_kind
        self.n_items = offset
        self.offsets = np.array([s.shard["offset"] for s in shards] + [offset])
        has_ids = [s.item_ids is not None for s in shards]
        self.item_ids = np.concatenate([s.item_ids for s in shards]) if all(has_ids) else None
        self._pool = ThreadPoolExecutor(max_workers=len(shards), thread_name_prefix="recfb-shard")

    def search(self, queries, k: int = 10, exclude=None, filter_items=None, ids: str = "internal", **search_params):
        """As :meth:`ItemIndex.search`, over all shards."""
        _inputs.check_ids_space(ids)
        q = _inputs.check_queries(queries, self.dim)
        k = _inputs.check_k(k, self.n_items)
        excl = _inputs.check_exclude(exclude, q.shape[0], self.n_items)
        banned = _inputs.check_filter_items(filter_items, self.n_items)

        def one(i):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            ex = None if excl is None else excl[:, lo:hi]
            bn = None if banned is None else banned[(banned >= lo) & (banned < hi)] - lo
            top, scores = self.shards[i].search(q, min(k, hi - lo), exclude=ex, filter_items=bn, ids="internal",
                                                **search_params)
            return np.where(top >= 0, top.astype(np.int64) + lo, -1), scores

        parts = list(self._pool.map(one, range(len(self.shards))))
        all_ids = np.concatenate([p[0] for p in parts], axis=1)
        all_scores = np.concatenate([p[1] for p in parts], axis=1)
        top, scores = merge_topk_rows(all_ids, all_scores, k)  # padded when shards hold < k in total
        if ids == "external" and self.item_ids is not None:
            ext = self.item_ids[np.maximum(top, 0)]
            return np.where(top >= 0, ext, "" if ext.dtype.kind in "US" else -1), scores
        return top.astype(np.int32), scores.astype(np.float32, copy=False)

    recommend = search

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for s in self.shards:
            if isinstance(s, ShardWorker):
                s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- workers
class ShardWorker:
    """One shard served by its own process (started with ``spawn``), loaded from a directory
    written by ``ItemIndex.save``. Messages are JSON headers plus ``.npz`` array payloads
    (read with ``allow_pickle=False``), never pickles. Calls from several threads are
    serialised per worker; use several workers for parallelism.
    """

    def __init__(self, path, device: str = "cpu", threads: int | None = None, timeout: float = 300.0,
                 wait: bool = True):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child, str(path), device, threads), daemon=True)
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
        self.timeout = timeout
        self._ready = False
        if wait:
            self.wait_ready()

    @classmethod
    def start_many(cls, paths, **kwargs) -> list["ShardWorker"]:
        """Start one worker per path, loading in parallel; return them once all are ready."""
        workers = [cls(p, wait=False, **kwargs) for p in paths]
        for w in workers:
            w.wait_ready()
        return workers

    def wait_ready(self) -> "ShardWorker":
        """Block until the worker has loaded its shard (raises what loading raised)."""
        if self._ready:
            return self
        header, arrays = self._receive()
        if not header.get("ok"):
            self._proc.join(5)
            _raise(header)
        self.kind, self.metric, self.dim = header["kind"], header["metric"], header["dim"]
        self.n_items, self.query_kind, self.shard = header["n_items"], header["query_kind"], header["shard"]
        self.item_ids = arrays.get("item_ids")
        self._ready = True
        return self

    def search(self, queries, k: int = 10, exclude=None, filter_items=None, ids: str = "internal",
               efSearch: int | None = None, nprobe: int | None = None):
        q = _inputs.check_queries(queries, self.dim)
        excl = _inputs.check_exclude(exclude, q.shape[0], self.n_items)
        banned = _inputs.check_filter_items(filter_items, self.n_items)
        arrays = {"queries": q}
        if excl is not None:
            arrays.update({"exclude.indptr": excl.indptr, "exclude.indices": excl.indices})
        if banned is not None:
            arrays["filter_items"] = banned
        header = {"op": "search", "k": int(k), "ids": ids, "efSearch": efSearch, "nprobe": nprobe}
        with self._lock:
            _send(self._conn, header, arrays)
            reply, out = self._receive()
        if not reply.get("ok"):
            _raise(reply)
        return out["ids"], out["scores"]

    def _receive(self):
        if not self._conn.poll(self.timeout):
            raise TimeoutError(f"shard worker {self._proc.pid} did not answer within {self.timeout} s.")
        try:
            return _recv(self._conn)
        except EOFError:
            raise RuntimeError(f"shard worker {self._proc.pid} exited (code {self._proc.exitcode}).") from None

    def close(self) -> None:
        """Ask the worker to exit; terminate it if it does not within 10 s."""
        if self._proc.is_alive() and self._ready:
            try:
                with self._lock:
                    _send(self._conn, {"op": "close"}, {})
            except (BrokenPipeError, OSError):
                pass
            self._proc.join(10)
        if self._proc.is_alive():  # a hung worker, or one never waited for
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "FileNotFoundError": FileNotFoundError,
           **{name: cls for name, cls in vars(errors).items() if isinstance(cls, type) and issubclass(cls, Exception)}}


def _raise(header):
    raise _ERRORS.get(header.get("error"), RuntimeError)(header.get("message", "shard worker failed"))


def _send(conn, header: dict, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    conn.send_bytes(json.dumps(header).encode())
    conn.send_bytes(buf.getvalue())


def _recv(conn):
    header = json.loads(conn.recv_bytes().decode())
    with np.load(io.BytesIO(conn.recv_bytes()), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return header, arrays


def _worker_main(conn, path: str, device: str, threads: int | None) -> None:  # runs in the worker process
    if threads:
        import faiss
        import torch
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    try:
        index = ItemIndex.load(path, device=device)
        if index.shard is None:
            raise ValueError(f"{path} is not a shard (no shard metadata); build it with build_shards().")
    except Exception as exc:  # report, then exit
        _send(conn, {"ok": False, "error": type(exc).__name__, "message": str(exc)}, {})
        return
    info = {"ok": True, "kind": index.kind, "metric": index.metric, "dim": index.dim, "n_items": index.n_items,
            "query_kind": index.query_kind, "shard": index.shard}
    _send(conn, info, {} if index.item_ids is None else {"item_ids": index.item_ids})
    while True:
        try:
            header, arrays = _recv(conn)
        except (EOFError, OSError):
            break
        if header.get("op") != "search":
            break
        try:
            n = arrays["queries"].shape[0]
            excl = None
            if "exclude.indptr" in arrays:
                idx = arrays["exclude.indices"]
                excl = sp.csr_matrix((np.ones(idx.size, np.float32), idx, arrays["exclude.indptr"]),
                                     shape=(n, index.n_items))
            ids, scores = index.search(arrays["queries"], header["k"], exclude=excl,
                                       filter_items=arrays.get("filter_items"), ids=header["ids"],
                                       efSearch=header.get("efSearch"), nprobe=header.get("nprobe"))
            _send(conn, {"ok": True}, {"ids": ids, "scores": scores})
        except Exception as exc:
            _send(conn, {"ok": False, "error": type(exc).__name__, "message": str(exc)}, {})
    conn.close()
