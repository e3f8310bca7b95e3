import json
import subprocess
import sys

import pytest

from recfb.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("datasets", "train", "evaluate", "recommend", "bench", "demo"):
        assert cmd in out


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "recfb", "datasets", "list"], capture_output=True, text=True)
    assert res.returncode == 0 and "ml-100k" in res.stdout


def test_train_evaluate_recommend_round_trip(tmp_path, capsys):
    model = tmp_path / "knn.npz"
    code, out, _ = run(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "itemknn",
                       "--param", "neighbors=50", "-o", str(model))
    assert code == 0 and model.exists()
    code, out, _ = run(capsys, "--quiet", "evaluate", "--model", str(model), "--k", "5", "10")
    metrics = json.loads(out)
    assert code == 0 and 0 < metrics["ndcg@10"] <= 1 and "recall@5" in metrics
    code, out, _ = run(capsys, "--quiet", "recommend", "--model", str(model), "--user", "0", "3", "-N", "4")
    assert code == 0 and out.count("item ") == 8


@pytest.mark.parametrize("argv,match", [
    (["recommend", "--user", "99999999", "-N", "3"], "unknown user ids"),
    (["recommend", "--user", "0", "-N", "0"], "N == 0"),
    (["recommend", "--user", "abc"], "not an integer"),
    (["evaluate", "--k", "0"], "k == 0"),
])
def test_bad_requests_exit_2_with_one_line(tmp_path, capsys, argv, match):
    model = tmp_path / "pop.npz"
    assert main(["--quiet", "train", "--dataset", "synthetic", "--model", "popular", "-o", str(model)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "--quiet", *argv[:1], "--model", str(model), *argv[1:])
    assert code == 2
    assert match in err and err.count("\n") == 1


def test_unknown_dataset_and_param(tmp_path, capsys):
    code, _, err = run(capsys, "--quiet", "train", "--dataset", "nope", "--model", "popular", "-o", str(tmp_path / "x"))
    assert code == 2 and "nope" in err
    code, _, err = run(capsys, "--quiet", "train", "--dataset", "synthetic", "--model", "itemknn",
                       "--param", "bogus=1", "-o", str(tmp_path / "x"))
    assert code == 2 and "bogus" in err


def test_truncated_model_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really")
    code, _, err = run(capsys, "evaluate", "--model", str(bad), "--dataset", "synthetic")
    assert code == 2 and "not a readable recfb model" in err


def test_bench_prints_leaderboard(capsys):
    code, out, _ = run(capsys, "--quiet", "bench", "--dataset", "synthetic", "--models", "popular", "itemknn")
    assert code == 0 and "ndcg@10" in out and "itemknn" in out and "popular" in out
