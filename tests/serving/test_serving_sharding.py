"""Two shards, in-process and in worker processes, against the unsharded index."""
import numpy as np
import pytest
from serving_helpers import assert_exact_topk, brute_scores

from recfb.serving import ItemIndex, ShardedIndex, ShardWorker, build_shards, split_index


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3001, 16)).astype(np.float32)
    Q = rng.standard_normal((60, 16)).astype(np.float32)
    excl = [rng.choice(3001, 100, replace=False) for _ in range(60)]
    excl[0] = np.setdiff1d(np.arange(3001), [5, 2999])  # nearly everything: padding across shards
    banned = rng.choice(3001, 30, replace=False)
    return X, Q, excl, banned


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_two_local_shards_equal_unsharded(data, metric):
    X, Q, excl, banned = data
    full = ItemIndex.from_vectors(X, metric=metric, item_ids=np.arange(3001) + 7, device="cpu")
    with ShardedIndex(split_index(full, 2)) as sharded:
        assert sharded.n_items == 3001 and [s.n_items for s in sharded.shards] == [1500, 1501]
        for kwargs in ({}, {"exclude": excl, "filter_items": banned}):
            a_ids, a_scores = full.search(Q, 10, **kwargs)
            b_ids, b_scores = sharded.search(Q, 10, **kwargs)
            np.testing.assert_array_equal(a_ids, b_ids)
            np.testing.assert_allclose(a_scores, b_scores, rtol=1e-6, atol=1e-5)
            assert_exact_topk(b_ids, b_scores, brute_scores(Q, X, metric, kwargs.get("exclude"), kwargs.get("filter_items")), 10)
        ext, _ = sharded.search(Q[:3], 10, exclude=excl[:3], ids="external")
        np.testing.assert_array_equal(ext, full.search(Q[:3], 10, exclude=excl[:3], ids="external")[0])
        assert ext[0, 2] == -1  # the padded user


def test_shard_held_by_a_worker_process(tmp_path, data):
    """One shard in this process, the other loaded from disk by a worker process (the way a
    catalogue too large for one machine is spread): same answers as the unsharded index."""
    X, Q, excl, banned = data
    full = ItemIndex.from_vectors(X, device="cpu")
    local, remote = build_shards(X, 2, device="cpu")
    worker = ShardWorker(remote.save(tmp_path / "shard1"), threads=1)
    with ShardedIndex([worker, local]) as sharded:
        a = full.search(Q, 10, exclude=excl, filter_items=banned)
        b = sharded.search(Q, 10, exclude=excl, filter_items=banned)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-5)
        with pytest.raises(ValueError, match="dimension"):
            sharded.search(Q[:, :3], 10)
        with pytest.raises(ValueError, match="k == 0"):
            worker.search(Q, 0)  # errors raised in the worker come back with their type
    assert not worker._proc.is_alive()


def test_worker_reports_a_file_that_is_not_a_shard(tmp_path, data):
    """The worker's loop, run in a thread: a load error comes back typed, then it exits."""
    import multiprocessing as mp
    import threading

    from recfb.serving.sharding import _raise, _recv, _worker_main
    path = ItemIndex.from_vectors(data[0], device="cpu").save(tmp_path / "whole")
    parent, child = mp.Pipe()
    t = threading.Thread(target=_worker_main, args=(child, str(path), "cpu", None))
    t.start()
    header, _ = _recv(parent)
    t.join(10)
    with pytest.raises(ValueError, match="not a shard"):
        _raise(header)


def test_shards_must_tile_the_catalogue(data):
    X = data[0]
    shards = build_shards(X, 3, device="cpu")
    with pytest.raises(ValueError, match="tile"):
        ShardedIndex([shards[0], shards[2]])
    with pytest.raises(ValueError, match="shard metadata"):
        ShardedIndex([ItemIndex.from_vectors(X, device="cpu")])
