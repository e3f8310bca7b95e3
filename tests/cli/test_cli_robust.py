"""The CLI never prints a traceback for bad input: one line, exit status 2 (issue 15, part 5);
global options anywhere; evaluation on a leaking split refused; sequential models wired in."""
import sys

import numpy as np
import pytest

import recfb
from recfb.cli.main import MODELS, SEQUENTIAL, build_parser, main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys, *argv, match):
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def bpr_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "bpr.npz"
    assert main(["--quiet", "train", "--dataset", "synthetic", "--model", "bpr", "--param", "iterations=1",
                 "--param", "factors=16", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def pop_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "pop.npz"
    assert main(["--quiet", "train", "--dataset", "synthetic", "--model", "popular", "-o", str(path)]) == 0
    return path


@pytest.mark.parametrize("param,match", [
    ("learning_rate=Infinity", "learning_rate == inf"),
    ("device=tpu", "device == 'tpu', must be 'auto', 'cpu', 'cuda'"),
])
def test_bad_model_parameters_are_one_line(tmp_path, capsys, param, match):
    one_line_error(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "bpr", "--param", "iterations=1",
                   "--param", param, "-o", tmp_path / "m.npz", match=match)


def test_lightgcn_without_torch_geometric_names_the_extra(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "torch_geometric" or m.startswith("torch_geometric.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch_geometric", None)  # import torch_geometric -> ImportError
    one_line_error(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "lightgcn", "--param",
                   "iterations=1", "-o", tmp_path / "m.npz", match="pip install recfb[graph]")


@pytest.mark.parametrize("params,match", [
    (["pq_m=7"], "pq_m == 7, must divide the vector dimension (16)"),
    (["pq_bits=20"], "pq_bits == 20 was given without pq_m"),
    (["pq_m=4", "pq_bits=20"], "pq_bits == 20, must be in 1..16"),
    (["pq_m=4", "pq_bits=12"], "only 500 items to train on"),
])
def test_export_pq_errors_are_one_line(bpr_file, tmp_path, capsys, params, match):
    argv = ["--quiet", "export", "--model", bpr_file, "--kind", "ivf", "-o", tmp_path / "ix"]
    for p in params:
        argv += ["--param", p]
    one_line_error(capsys, *argv, match=match)


def test_output_that_is_a_directory_is_refused_before_training(tmp_path, capsys):
    one_line_error(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "popular", "-o", tmp_path,
                   match="is a directory")
    one_line_error(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "popular", "-o",
                   tmp_path / "no" / "such" / "m.npz", match="does not exist")


def test_global_options_before_or_after_the_subcommand(tmp_path):
    parser = build_parser()
    base = ["train", "--dataset", "synthetic", "--model", "popular", "-o", "m.npz"]
    for argv in (["--quiet", "--data-dir", str(tmp_path)] + base, base + ["--quiet", "--data-dir", str(tmp_path)],
                 ["--quiet"] + base + ["--data-dir", str(tmp_path)]):
        args = parser.parse_args(argv)
        assert args.quiet is True and args.data_dir == str(tmp_path), argv
    args = parser.parse_args(base)
    assert args.quiet is False and args.data_dir is None


def test_missing_data_dir_is_an_error_not_a_fallback(tmp_path, capsys):
    for where in ("before", "after"):
        opt = ["--data-dir", tmp_path / "missing"]
        argv = ["datasets", "list"]
        argv = opt + argv if where == "before" else argv + opt
        one_line_error(capsys, *argv, match="does not exist")


def test_quiet_after_the_subcommand_silences(pop_file, capsys):
    code, _, err = run(capsys, "evaluate", "--model", pop_file, "--k", "5", "--quiet")
    assert code == 0 and err == ""


def test_evaluate_on_another_split_is_refused_and_the_overlap_counted(pop_file, capsys):
    from recfb import datasets
    from recfb.data import split
    data = datasets.load("synthetic")
    train0, _ = split.random_holdout(data, test_fraction=0.2, seed=0)
    _, test1 = split.random_holdout(data, test_fraction=0.2, seed=1)
    overlap = test1.matrix.multiply(train0.matrix).nnz  # independent count of the leak
    assert overlap > 0
    err = one_line_error(capsys, "--quiet", "evaluate", "--model", pop_file, "--seed", 1, match="seed 0 (recorded) vs 1")
    assert f"{overlap:,} of the {test1.matrix.nnz:,} test interactions were in its training data" in err
    assert "--allow-train-test-overlap" in err
    code, out, _ = run(capsys, "--quiet", "evaluate", "--model", pop_file, "--seed", 1, "--allow-train-test-overlap")
    assert code == 0 and "ndcg@10" in out
    code, _, _ = run(capsys, "--quiet", "evaluate", "--model", pop_file, "--seed", 0)  # the recorded split
    assert code == 0
    one_line_error(capsys, "--quiet", "evaluate", "--model", pop_file, "--test-fraction", 0.3,
                   match="test_fraction 0.2 (recorded) vs 0.3")


def test_sequential_models_are_in_the_registry_and_train_on_leave_one_out(tmp_path, capsys):
    assert {"sasrec", "gsasrec", "bert4rec"} <= set(MODELS) and set(SEQUENTIAL) <= set(MODELS)
    path = tmp_path / "sas.npz"
    code, out, err = run(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "sasrec", "--param",
                         "iterations=1", "--param", "factors=8", "--param", "max_len=5", "--param", "num_blocks=1",
                         "-o", path)
    assert code == 0, err
    model = recfb.load(path)
    assert type(model).__name__ == "SASRec" and model.metadata_["split"] == "leave-one-out"
    ids, _ = model.recommend(np.arange(3), _rows(model, 3), N=5)
    assert ids.shape == (3, 5)
    one_line_error(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "sasrec", "--split", "random",
                   "-o", tmp_path / "x.npz", match="use --split leave-one-out")


def _rows(model, n):
    import scipy.sparse as sp
    return sp.csr_matrix((n, model.n_items_), dtype=np.float32)


def test_tune_sasrec_uses_the_loo_protocol_on_interactions(tmp_path, capsys, monkeypatch):
    from recfb import tune
    from recfb.data import Interactions
    seen = {}

    def fake_search(model, train_X, valid_X, **kw):
        seen.update(model=type(model).__name__, train=train_X, valid=valid_X, protocol=kw["protocol"])
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(tune, "search", fake_search)
    one_line_error(capsys, "--quiet", "tune", "--dataset", "synthetic", "--model", "sasrec", "--trials", 1,
                   "-o", tmp_path / "t.npz", match="stopped by the test")
    assert seen["model"] == "SASRec" and seen["protocol"] == "loo"
    assert isinstance(seen["train"], Interactions) and isinstance(seen["valid"], Interactions)
    assert np.all(np.bincount(seen["valid"].users, minlength=seen["valid"].n_users) <= 1)  # one next item per user
    one_line_error(capsys, "--quiet", "tune", "--dataset", "synthetic", "--model", "sasrec", "--protocol", "full",
                   "-o", tmp_path / "t.npz", match="--protocol loo")
    one_line_error(capsys, "--quiet", "tune", "--dataset", "synthetic", "--model", "popular", "--protocol", "loo",
                   "-o", tmp_path / "t.npz", match="for sequential models")
