"""`recfb train ... --distributed` in each of 2 ranks (as `torchrun --nproc_per_node=2 -m recfb
train` runs it): one message, one file (rank 0's), the same model as one process."""
import contextlib
import io

import dist_workers as W
from dist_launch import results_of

import recfb
from recfb.cli.main import main


def test_distributed_train_writes_one_model_equal_to_one_process(rank_results, tmp_path):
    res = results_of(rank_results, "cli")
    assert [int(r["status"]) for r in res] == [0, 0]
    assert "saved to" in str(res[0]["stdout"]) and "on 2 ranks" in str(res[0]["stdout"])
    assert str(res[1]["stdout"]) == ""  # rank 1 prints nothing and writes nothing
    _, out = rank_results
    assert sorted(p.name for p in (out / "cli").iterdir()) == ["two.npz"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(W.cli_args(tmp_path / "one.npz", distributed=False)) == 0
    a, b = recfb.load(out / "cli" / "two.npz").weights_, recfb.load(tmp_path / "one.npz").weights_
    assert a.nnz > 0 and (a != b).nnz == 0 and (a.data == b.data).all()
