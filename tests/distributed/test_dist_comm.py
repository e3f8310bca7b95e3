"""recfb.distributed.Comm on 2 gloo processes, and its single-process (no-op) behaviour."""
import json
import warnings

import dist_workers as W
import numpy as np
import pytest
import torch
from dist_launch import WORLD_SIZE, results_of

from recfb.distributed import Comm, get_comm
from recfb.utils.errors import FormatError


def test_two_ranks_know_their_place(rank_results):
    res = results_of(rank_results, "comm")
    assert [int(r["rank"]) for r in res] == [0, 1]
    assert all(int(r["world_size"]) == 2 and bool(r["enabled"]) for r in res)
    assert [bool(r["is_main"]) for r in res] == [True, False]


def test_shard_is_disjoint_covering_and_equal_sized(rank_results):
    res = results_of(rank_results, "comm")
    order = res[0]["order"]
    shards = [r["shard"] for r in res]
    assert [s.size for s in shards] == [6, 6]  # ceil(11 / 2): every rank runs the same steps
    # padded by wrapping: the order followed by its first entry, dealt out with stride 2
    padded = np.concatenate([order, order[:1]])
    assert np.array_equal(shards[0], padded[0::2]) and np.array_equal(shards[1], padded[1::2])
    assert set(np.concatenate(shards)) == set(order)  # covering: nothing dropped


def test_shard_refuses_orders_that_differ_between_ranks(rank_results):
    assert all(bool(r["mismatch_refused"]) for r in results_of(rank_results, "comm"))


def test_all_reduce_mean_broadcast_and_gather(rank_results):
    for r in results_of(rank_results, "comm"):
        np.testing.assert_array_equal(r["mean_a"], np.full(3, 1.5))           # mean of 1 and 2
        np.testing.assert_array_equal(r["mean_b"], np.arange(4.0).reshape(2, 2) * 5)  # mean of 0 and 10x
        assert json.loads(str(r["bcast_obj"])) == {"stop": True, "epoch": 3}   # rank 0's decision
        np.testing.assert_array_equal(r["bcast_tensor"], [1.0, 7.0])         # rank 1's tensor
        np.testing.assert_array_equal(r["gathered"], [0, 1, 100, 101, 102])  # rank order
    r0, r1 = results_of(rank_results, "comm")  # own examples padded to the longest rank's 5 steps
    np.testing.assert_array_equal(r0["equalized"], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(r1["equalized"], [0, 2, 4, 6, 8])


def test_resume_at_another_world_size_is_refused_with_the_sizes(rank_results):
    for r in results_of(rank_results, "comm"):
        msg = str(r["resume_msg"])
        assert "world size 1" in msg and "world size 2" in msg and "--nproc_per_node=1" in msg


def single_process_reference():
    X, y, order = W.regression_data()
    return W.sgd_steps(W.tiny_module(), X, y, order, W.LOCAL_BATCH * WORLD_SIZE)


def test_ddp_equals_one_process_on_the_global_batch(rank_results):
    res = results_of(rank_results, "ddp")
    assert str(res[0]["wrapped"]) == "DistributedDataParallel"
    # identical weights on every rank (DDP all-reduces the same gradients on both)
    np.testing.assert_array_equal(res[0]["ddp_weights"], res[1]["ddp_weights"])
    np.testing.assert_array_equal(res[0]["manual_weights"], res[1]["manual_weights"])
    # ... equal to one process stepping on the union of the ranks' batches (mean loss)
    ref = single_process_reference()
    np.testing.assert_allclose(res[0]["ddp_weights"], ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res[0]["manual_weights"], ref, rtol=1e-6, atol=1e-6)
    # and the steps did something (the comparison is not between two untrained modules)
    X, y, order = W.regression_data()
    untrained = W.sgd_steps(W.tiny_module(), X, y, order[:0], 4)
    assert np.abs(ref - untrained).max() > 0.1


# ---------------------------------------------------------------------- one process
def test_single_process_comm_is_a_no_op():
    comm = get_comm(False)
    assert (comm.rank, comm.world_size, comm.is_main, comm.enabled) == (0, 1, True, False)
    order = np.arange(5)
    assert comm.shard(order) is order
    module = torch.nn.Linear(2, 1)
    assert comm.wrap(module) is module
    t = torch.ones(2)
    comm.all_reduce_mean_([t])
    assert torch.equal(t, torch.ones(2))
    assert comm.broadcast({"a": 1}) == {"a": 1}
    assert comm.all_gather_object(3) == [3]
    np.testing.assert_array_equal(comm.all_gather_array(np.arange(3)), np.arange(3))
    comm.barrier()
    comm.check_resume(1)
    comm.check_resume(None)  # checkpoints from before the world size was recorded
    assert get_comm(None).world_size == 1


def test_get_comm_from_the_environment(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.warns(UserWarning, match="WORLD_SIZE is unset"):
        assert get_comm(True).world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_comm(True).world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE == 'two'"):
        get_comm(True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        get_comm(True)
    with pytest.raises(ValueError, match="distributed == 'yes'"):
        get_comm("yes")


def test_bad_arguments_are_named():
    comm = Comm()
    with pytest.raises(ValueError, match="1-D"):
        comm.shard(np.zeros((2, 2)))
    with pytest.raises(FormatError, match="world size 2"):
        comm.check_resume(2)
    with pytest.raises(FormatError, match="expected an int >= 1"):
        comm.check_resume("2")
    with pytest.raises(ValueError, match="op == 'avg'"):
        comm.all_reduce_(torch.ones(1), "avg")
    with pytest.raises(TypeError, match="numeric or bool"):
        comm.all_gather_array(np.array(["a"]))
