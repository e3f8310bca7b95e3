"""save/load: equal results after a round trip; clear FormatErrors for anything else."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.models import ItemKNN
from recfb.serving import ItemIndex, persist
from recfb.utils.errors import FormatError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    Q = rng.standard_normal((40, 16)).astype(np.float32)
    excl = [rng.choice(3000, 20, replace=False) for _ in range(40)]
    return X, Q, excl


@pytest.mark.parametrize("kind,params", [("exact", {}), ("hnsw", {"M": 16}), ("ivf", {"nlist": 32, "nprobe": 4}),
                                         ("ivf", {"nlist": 16, "pq_m": 4})])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_round_trip_gives_equal_results(tmp_path, data, kind, params, metric):
    X, Q, excl = data
    index = ItemIndex.from_vectors(X, metric=metric, kind=kind, item_ids=np.arange(3000) * 10, device="cpu", **params)
    before = index.search(Q, 10, exclude=excl, ids="external")
    index.save(tmp_path / "idx")
    loaded = ItemIndex.load(tmp_path / "idx", device="cpu")
    after = loaded.search(Q, 10, exclude=excl, ids="external")
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert (loaded.kind, loaded.metric, loaded.params) == (kind, metric, index.params)
    assert (tmp_path / "idx" / "index.faiss").exists()  # a plain faiss file other tools can read
    meta = json.loads((tmp_path / "idx" / "metadata.json").read_text())
    assert {"recfb_version", "faiss_version", "sha256", "metric", "kind"} <= set(meta)


def test_round_trip_of_item_item_index_with_users(tmp_path):
    rng = np.random.default_rng(1)
    X = sp.random(60, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    X.data[:] = 1
    model = ItemKNN(neighbors=10).fit(X, show_progress=False)
    index = ItemIndex.from_model(model, item_ids=[f"i{j}" for j in range(40)])
    index.attach_users(user_items=X, user_ids=[f"u{j}" for j in range(60)])
    index.save(tmp_path / "knn")
    loaded = ItemIndex.load(tmp_path / "knn")
    users = rng.choice([f"u{j}" for j in range(60)], 10)
    for a, b in zip(index.recommend_users(users, 5), loaded.recommend_users(users, 5)):
        np.testing.assert_array_equal(a, b)
    assert loaded.query_kind == "history" and loaded.model_class == "ItemKNN"


def test_saving_over_an_index_replaces_it_and_refuses_other_paths(tmp_path, data):
    X, Q, _ = data
    ItemIndex.from_vectors(X[:100], device="cpu").save(tmp_path / "idx")
    ItemIndex.from_vectors(X[:200], device="cpu").save(tmp_path / "idx")
    assert ItemIndex.load(tmp_path / "idx").n_items == 200
    (tmp_path / "file.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing"):
        ItemIndex.from_vectors(X[:10], device="cpu").save(tmp_path / "file.txt")
    assert (tmp_path / "file.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "idx"]  # no temporary leftovers


@pytest.fixture()
def saved(tmp_path, data):
    X, _, _ = data
    index = ItemIndex.from_vectors(X, kind="hnsw", M=8, device="cpu")
    index.attach_users(user_vectors=np.ones((3, 16), np.float32), user_items=sp.csr_matrix((3, 3000), dtype=np.float32))
    return index.save(tmp_path / "idx")


def _edit_meta(path, **changes):
    meta = json.loads((path / "metadata.json").read_text())
    meta.update(changes)
    (path / "metadata.json").write_text(json.dumps(meta))


def test_truncated_index_file(saved):
    f = saved / "index.faiss"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(FormatError, match="checksum mismatch"):
        ItemIndex.load(saved)


def test_flipped_byte_in_arrays(saved):
    f = saved / "arrays.npz"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="arrays.npz: checksum mismatch"):
        ItemIndex.load(saved)


def test_corrupted_index_with_forged_checksum_is_still_a_format_error(saved):
    f = saved / "index.faiss"
    f.write_bytes(b"not a faiss index at all")
    _edit_meta(saved, sha256={**json.loads((saved / "metadata.json").read_text())["sha256"],
                              "index.faiss": persist._file_digest(f)})
    with pytest.raises(FormatError, match="not a readable faiss index"):
        ItemIndex.load(saved)


def test_corrupted_metadata(saved):
    (saved / "metadata.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        ItemIndex.load(saved)


def test_missing_or_extra_files(saved):
    (saved / "extra.bin").write_bytes(b"x")
    with pytest.raises(FormatError, match="do not match the metadata"):
        ItemIndex.load(saved)
    (saved / "extra.bin").unlink()
    (saved / "arrays.npz").unlink()
    with pytest.raises(FormatError, match="do not match the metadata"):
        ItemIndex.load(saved)


@pytest.mark.parametrize("changes,match", [
    ({"format_version": 99}, "format version 99"),
    ({"format_version": "1"}, "format version '1'"),
    ({"faiss_version": "99.0.0"}, "newer than the installed faiss"),
    ({"format": "something-else"}, "not a recfb item index"),
    ({"n_items": 12}, "does not match the metadata"),
    ({"dim": 15}, "does not match the metadata"),
    ({"metric": "l2"}, "does not match the metadata"),
    ({"kind": "annoy"}, "unknown kind"),
])
def test_version_and_metadata_mismatch(saved, changes, match):
    _edit_meta(saved, **changes)
    with pytest.raises(FormatError, match=match):
        ItemIndex.load(saved)


def test_foreign_files(tmp_path, data):
    X, _, _ = data
    model_file = tmp_path / "model.npz"
    ItemKNN(neighbors=5).fit(sp.csr_matrix(np.eye(5, dtype=np.float32)), show_progress=False).save(model_file)
    with pytest.raises(FormatError, match="recfb model: write an index with `recfb export`"):
        ItemIndex.load(model_file)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no metadata.json"):
        ItemIndex.load(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metadata.json").write_text(json.dumps({"name": "someone else's"}))
    with pytest.raises(FormatError, match="not a recfb item index"):
        ItemIndex.load(tmp_path / "other")
    (tmp_path / "junk.bin").write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(FormatError, match="not a recfb index directory"):
        ItemIndex.load(tmp_path / "junk.bin")
    with pytest.raises(FileNotFoundError):
        ItemIndex.load(tmp_path / "nowhere")


def test_load_never_unpickles(saved, monkeypatch):
    import pickle
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    assert ItemIndex.load(saved).users.n_users == 3
