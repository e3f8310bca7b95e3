"""fit(distributed=True) on 2 gloo processes: identical weights on every rank, resume after an
interruption, a checkpoint of another world size refused; world size 1 is plain training."""
import copy

import dist_workers as W
import numpy as np
import pytest
from dist_launch import results_of

from recfb.evaluation import ranking_metrics
from recfb.utils.errors import FormatError


@pytest.fixture(scope="module")
def one_process():
    return W.bpr().fit(W.train_matrix(), show_progress=False)


def test_every_rank_ends_with_the_same_weights(rank_results, one_process):
    r0, r1 = results_of(rank_results, "train")
    np.testing.assert_array_equal(r0["item_factors"], r1["item_factors"])
    np.testing.assert_array_equal(r0["user_factors"], r1["user_factors"])
    assert not np.array_equal(one_process.item_factors, r0["item_factors"])  # 2 ranks: other batches
    assert np.abs(r0["item_factors"]).max() > 0


def test_two_ranks_learn_as_well_as_one_process(rank_results, one_process):
    r0, _ = results_of(rank_results, "train")
    train, test = W.make_matrices(2, 150, 60)
    one, two = one_process, copy.deepcopy(one_process)
    two.user_factors, two.item_factors = r0["user_factors"], r0["item_factors"]
    a, b = ranking_metrics(one, train, test, k=10), ranking_metrics(two, train, test, k=10)
    assert b["ndcg@10"] > 0.5 * a["ndcg@10"] > 0  # same ballpark on a tiny log (the benchmark measures closely)


def test_resume_after_an_interruption_ends_where_the_uninterrupted_run_does(rank_results):
    for r in results_of(rank_results, "train"):
        assert bool(r["interrupted"])
        assert int(r["resumed_epochs"]) == 4
        np.testing.assert_array_equal(r["resumed_item_factors"], r["item_factors"])
        np.testing.assert_array_equal(r["resumed_user_factors"], r["user_factors"])


def test_resume_at_another_world_size_is_refused(rank_results):
    for r in results_of(rank_results, "train"):  # a 1-process checkpoint resumed by 2 ranks
        assert "world_size" in str(r["bad_world_size_msg"]) or "world size" in str(r["bad_world_size_msg"])
    _, out = rank_results  # and the 2-rank checkpoint resumed by one process
    with pytest.raises(FormatError, match="world.size"):
        W.bpr().fit(W.train_matrix(), show_progress=False, checkpoint=out / "ckpt_2ranks.npz", resume=True)


def test_world_size_1_is_plain_training(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1
    X = W.train_matrix()
    # the autograd path, and the fused kernel (deterministic on one thread)
    for make in (W.bpr, lambda: W.bpr().set_params(optimizer="auto", num_threads=1)):
        plain = make().fit(X, show_progress=False)
        dist = make().fit(X, show_progress=False, distributed=True)
        np.testing.assert_array_equal(plain.item_factors, dist.item_factors)
        np.testing.assert_array_equal(plain.user_factors, dist.user_factors)
