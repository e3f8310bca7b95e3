"""Model files are validated on load: parameters (types, ranges), every array's dtype, shape
and finiteness against the parameters, the zip directory's declared sizes before anything is
decompressed, odd metadata; NaN is refused at save; a failed save leaves nothing behind.
Tampered files here carry recomputed checksums, so only the validation can catch them."""
import io
import json
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import recfb
from recfb.models import EASE, MF, ItemKNN, MostPopular, SASRec
from recfb.testing import checkerboard_holdout
from recfb.utils.container import METADATA_KEY as _METADATA_KEY
from recfb.utils.container import digest as _digest
from recfb.utils.errors import DataError, FormatError


@pytest.fixture(scope="module")
def X():
    return checkerboard_holdout(20)[0]


@pytest.fixture(scope="module")
def mf(X):
    return MF(factors=4, iterations=1, random_state=0, device="cpu").fit(X, show_progress=False)


def _raw(model):
    buf = io.BytesIO()
    model.save(buf)
    return buf.getvalue()


def _arrays_meta(raw):
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop(_METADATA_KEY).tobytes().decode())
    return arrays, meta


def _rewrite(arrays, meta, *, resum=True):
    """A file of these arrays and metadata, with checksums and shapes recomputed."""
    if resum:
        meta = dict(meta, sha256={k: _digest(v) for k, v in arrays.items()},
                    arrays={k: [v.dtype.str, list(v.shape)] for k, v in arrays.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_METADATA_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    return io.BytesIO(buf.getvalue())


def test_round_trip_through_paths_and_file_objects(mf, X, tmp_path):
    for model in (mf, EASE().fit(X), ItemKNN(neighbors=5).fit(X, show_progress=False), MostPopular().fit(X)):
        back = recfb.load(io.BytesIO(_raw(model)))
        np.testing.assert_array_equal(back.recommend(np.arange(5), X[:5])[0], model.recommend(np.arange(5), X[:5])[0])
        path = model.save(tmp_path / f"{type(model).__name__}.npz")
        assert type(model).load(path).get_params() == model.get_params()
        with open(path, "rb") as fh:
            assert type(type(model).load(fh)) is type(model)
    with pytest.raises(FormatError, match="not a EASE"):
        EASE.load(io.BytesIO(_raw(mf)))


@pytest.mark.parametrize("change,match", [
    ({"factors": "abc"}, "factors"),
    ({"factors": -3}, "factors"),
    ({"factors": 4.5}, "factors"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"batch_size": True}, "batch_size"),
    ({"no_such_parameter": 1}, "no_such_parameter"),
])
def test_bad_parameters_are_refused(mf, change, match):
    arrays, meta = _arrays_meta(_raw(mf))
    meta["params"] = {**meta["params"], **change}
    with pytest.raises(FormatError, match=match):
        recfb.load(_rewrite(arrays, meta))


@pytest.mark.parametrize("edit,match", [
    (lambda a: a.update(item_factors=np.full_like(a["item_factors"], np.nan)), "NaN"),
    (lambda a: a.update(item_factors=a["item_factors"][:-1]), "item_factors.*shape"),
    (lambda a: a.update(item_factors=a["item_factors"].astype(np.float64)), "float64"),
    (lambda a: a.update(user_factors=a["user_factors"][:, :2], item_factors=a["item_factors"][:, :2]), "columns"),
    (lambda a: a.update(n_items_=np.asarray(10**6, np.int64)), "shape"),
    (lambda a: a.update(n_items_=np.asarray(-1, np.int64)), "n_items_"),
    (lambda a: a.update(n_users_=np.asarray(3.0)), "n_users_"),
    (lambda a: a.pop("item_factors"), "item_factors"),
])
def test_arrays_that_do_not_fit_the_parameters_are_refused(mf, edit, match):
    arrays, meta = _arrays_meta(_raw(mf))
    edit(arrays)
    with pytest.raises(FormatError, match=match):
        recfb.load(_rewrite(arrays, meta))


def test_sparse_state_is_checked(X):
    arrays, meta = _arrays_meta(_raw(ItemKNN(neighbors=5).fit(X, show_progress=False)))
    bad = dict(arrays)
    bad["similarity_.indices"] = bad["similarity_.indices"].copy()
    bad["similarity_.indices"][0] = 10**6  # an out-of-range column would read out of bounds later
    with pytest.raises(FormatError, match="column ids outside"):
        recfb.load(_rewrite(bad, meta))
    bad = dict(arrays, **{"similarity_.shape": np.asarray([5, 5], np.int64)})
    with pytest.raises(FormatError, match="shape"):
        recfb.load(_rewrite(bad, meta))


def test_sequential_histories_are_checked():
    from recfb.data import Interactions
    users = np.repeat(np.arange(6), 4)
    ds = Interactions.from_arrays(users, np.arange(users.size) % 7, item_ids=np.arange(7))
    m = SASRec(factors=8, iterations=1, max_len=4, random_state=0, device="cpu").fit(ds, show_progress=False)
    arrays, meta = _arrays_meta(_raw(m))
    bad = dict(arrays, hist_items=arrays["hist_items"] + 100)
    with pytest.raises(FormatError, match="hist_items"):
        recfb.load(_rewrite(bad, meta))
    bad = {k: v for k, v in arrays.items() if k != "net.item.weight"}
    bad["net.item.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(FormatError, match="do not fit"):
        recfb.load(_rewrite(bad, meta))


@pytest.mark.parametrize("meta_edit", [
    lambda m: [],                                   # metadata is a JSON list
    lambda m: {**m, "params": "x"},
    lambda m: {**m, "params": None},
    lambda m: {**m, "class": ["MF"]},
    lambda m: {**m, "format_version": "1"},
    lambda m: {**m, "sha256": ["a"]},
    lambda m: {**m, "sha256": {"item_factors": 3}},
    lambda m: {**m, "user_metadata": 7},
    lambda m: {**m, "arrays": {"item_factors": "x"}},
    lambda m: {**m, "arrays": 5},
])
def test_odd_metadata_is_a_format_error(mf, meta_edit):
    arrays, meta = _arrays_meta(_raw(mf))
    with pytest.raises(FormatError):
        recfb.load(_rewrite(arrays, meta_edit(meta), resum=False))


def test_declared_sizes_are_checked_before_decompressing(mf):
    """A deflated member that claims far more bytes than the metadata's shapes allow is
    refused from the zip directory; nothing is decompressed (a zip bomb of 400 MB of zeros)."""
    arrays, meta = _arrays_meta(_raw(mf))
    src = _rewrite(arrays, meta).getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "item_factors.npy":
                data = data + bytes(400 << 20)  # trailing zeros compress to almost nothing
            zout.writestr(info.filename, data)
    assert len(out.getvalue()) < 2 << 20
    with pytest.raises(FormatError, match="declares .* bytes uncompressed"):
        recfb.load(io.BytesIO(out.getvalue()))


def test_a_header_that_declares_a_huge_shape_is_refused_before_allocating(mf):
    arrays, meta = _arrays_meta(_raw(mf))
    src = _rewrite(arrays, meta).getvalue()
    with zipfile.ZipFile(io.BytesIO(src)) as z:
        member = z.read("item_factors.npy")
    header = member[:member.index(b"}") + 1].decode("latin1")
    huge = header.replace(str(tuple(arrays["item_factors"].shape)), "(100000000, 4)")
    patched = huge.encode("latin1") + member[len(header):]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, patched if info.filename == "item_factors.npy" else zin.read(info))
    with pytest.raises(FormatError, match="declares shape|metadata says|header"):
        recfb.load(io.BytesIO(out.getvalue()))


def test_nan_is_refused_at_save_and_a_failed_save_leaves_no_tmp(mf, tmp_path, monkeypatch):
    broken = MF.load(io.BytesIO(_raw(mf)))
    broken.item_factors = broken.item_factors.copy()
    broken.item_factors[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        broken.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []

    def fails_half_way(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fails_half_way)
    with pytest.raises(OSError, match="disk full"):
        mf.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_version_check_stays(mf):
    arrays, meta = _arrays_meta(_raw(mf))
    with pytest.raises(FormatError, match="newer than this recfb"):
        recfb.load(_rewrite(arrays, dict(meta, format_version=99)))


def test_sparse_matrices_round_trip_exactly():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((30, 25)) < 0.3).astype(np.float32))
    m = EASE(method="sparse").fit(X) if "method" in EASE().get_params() else EASE().fit(X)
    back = recfb.load(io.BytesIO(_raw(m)))
    np.testing.assert_array_equal(back.score(np.arange(30), X), m.score(np.arange(30), X))


# ---------------------------------------------------------------------------- index files
def _forge_index(path, arrays=None, meta_edit=None):
    """Rewrite an index directory's arrays/metadata with checksums recomputed (the file
    digests and the container's per-array ones: a forger who knows the format)."""
    from recfb.serving import persist
    from recfb.utils.container import write_container
    if arrays is not None:
        arrays = {k: v for k, v in arrays.items() if k != _METADATA_KEY}
        write_container(path / persist.ARRAYS_FILE, arrays, {}, persist.ARRAYS_FORMAT, 1)
    meta = json.loads((path / persist.META).read_text())
    meta["sha256"] = {n: persist._file_digest(path / n) for n in meta["sha256"]}
    if meta_edit is not None:
        meta = meta_edit(meta)
    (path / persist.META).write_text(json.dumps(meta))


@pytest.fixture
def saved_index(tmp_path):
    from recfb.serving import ItemIndex
    rng = np.random.default_rng(0)
    V = rng.standard_normal((50, 8)).astype(np.float32)
    index = ItemIndex.from_vectors(V, kind="exact", item_ids=np.arange(50) * 3, device="cpu")
    index.attach_users(user_vectors=rng.standard_normal((5, 8)).astype(np.float32), user_ids=np.arange(5))
    index.save(tmp_path / "idx")
    with np.load(tmp_path / "idx" / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return tmp_path / "idx", arrays


@pytest.mark.parametrize("edit,match", [
    (lambda a: a.update(item_ids=a["item_ids"][:-1]), "item_ids"),
    (lambda a: a.update(user_vectors=np.full_like(a["user_vectors"], np.nan)), "NaN"),
    (lambda a: a.update(user_vectors=a["user_vectors"][:, :3]), "user_vectors"),
    (lambda a: a.update(user_vectors=a["user_vectors"].astype(np.float64)), "user_vectors"),
])
def test_index_arrays_are_validated(saved_index, edit, match):
    from recfb.serving import ItemIndex
    path, arrays = saved_index
    edit(arrays)
    _forge_index(path, arrays)
    with pytest.raises(FormatError, match=match):
        ItemIndex.load(path, device="cpu")


@pytest.mark.parametrize("meta_edit", [
    lambda m: {**m, "n_items": "50"},
    lambda m: {**m, "n_items": -1},
    lambda m: {**m, "dim": True},
    lambda m: {**m, "params": [1]},
    lambda m: {**m, "sha256": {"../x": "0"}},
    lambda m: {**m, "kind": 3},
])
def test_odd_index_metadata_is_a_format_error(saved_index, meta_edit):
    from recfb.serving import ItemIndex
    path, _ = saved_index
    _forge_index(path, meta_edit=meta_edit)
    with pytest.raises(FormatError):
        ItemIndex.load(path, device="cpu")


def test_index_user_rows_out_of_range_are_refused(tmp_path):
    from recfb.serving import ItemIndex
    X = sp.csr_matrix((np.random.default_rng(0).random((20, 15)) < 0.3).astype(np.float32))
    index = ItemIndex.from_model(ItemKNN(neighbors=5).fit(X, show_progress=False))
    index.attach_users(user_items=X)
    index.save(tmp_path / "idx")
    with np.load(tmp_path / "idx" / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["user_items.indices"] = arrays["user_items.indices"].copy()
    arrays["user_items.indices"][0] = 10**6
    _forge_index(tmp_path / "idx", arrays)
    with pytest.raises((FormatError, DataError), match="outside|1000000"):
        ItemIndex.load(tmp_path / "idx")


def test_user_classes_register_explicitly_and_never_replace_another(tmp_path):
    from recfb.models import MostPopular, Recommender, register
    from recfb.models.base import _REGISTRY

    class MyPopular(MostPopular):
        pass

    X = sp.random(6, 5, density=0.5, format="csr", random_state=0)
    path = tmp_path / "m.npz"
    MyPopular().fit(X).save(path)
    assert "MyPopular" not in _REGISTRY  # a test double or user class does not register itself
    with pytest.raises(FormatError, match=r"unknown model class 'MyPopular'.*register"):
        recfb.load(path)
    register(MyPopular)
    try:
        assert type(recfb.load(path)) is MyPopular

        class MyPopularAgain(Recommender):
            pass
        MyPopularAgain.__name__ = "MyPopular"
        with pytest.raises(ValueError, match="already registered"):
            register(MyPopularAgain)
        with pytest.raises(TypeError, match="Recommender subclass"):
            register(int)
    finally:
        _REGISTRY.pop("MyPopular", None)


def test_index_arrays_are_checksummed_and_version_1_indices_still_load(saved_index):
    from recfb.serving import ItemIndex, persist
    path, arrays = saved_index
    expected = ItemIndex.load(path, device="cpu").search(np.eye(8, dtype=np.float32)[:2], k=3)
    # an array changed behind the container's back (file digest recomputed): its sha256 catches it
    forged = {k: v for k, v in arrays.items()}
    forged["item_ids"] = forged["item_ids"].copy()
    forged["item_ids"][0] += 1
    np.savez(path / persist.ARRAYS_FILE, **forged)
    _forge_index(path)
    with pytest.raises(FormatError, match="checksum mismatch"):
        ItemIndex.load(path, device="cpu")
    # a version-1 directory: a plain npz of the arrays, no container metadata
    np.savez(path / persist.ARRAYS_FILE, **{k: v for k, v in arrays.items() if k != _METADATA_KEY})
    _forge_index(path, meta_edit=lambda m: {**m, "format_version": 1})
    got = ItemIndex.load(path, device="cpu").search(np.eye(8, dtype=np.float32)[:2], k=3)
    np.testing.assert_array_equal(got[0], expected[0])
