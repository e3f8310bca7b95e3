"""download(): a local HTTP server on 127.0.0.1 serves archives the tests build; no real network."""
import dataclasses
import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest

from recfb import datasets
from recfb.datasets import registry
from recfb.datasets.download import (
    ChecksumError,
    DownloadError,
    download,
    extract_archive,
)
from recfb.utils.errors import DataError, DatasetNotFoundError

U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
U_ITEM = b"242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|0|0\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(serve folder, base URL, request log) of an HTTP server on 127.0.0.1, port chosen by the OS."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_writes_the_file_and_checks_sha256(server, tmp_path):
    root, url, _ = server
    payload = make_zip({"a.txt": b"hello"})
    (root / "a.zip").write_bytes(payload)
    dest = tmp_path / "out" / "a.zip"
    assert download(f"{url}/a.zip", dest, sha256=sha256(payload), quiet=True) == dest
    assert dest.read_bytes() == payload
    assert leftovers(dest.parent) == ["a.zip"]  # no temporary .part file stays behind


def test_wrong_sha256_raises_and_leaves_nothing(server, tmp_path):
    root, url, _ = server
    (root / "a.zip").write_bytes(make_zip({"a.txt": b"hello"}))
    dest = tmp_path / "out" / "a.zip"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download(f"{url}/a.zip", dest, sha256=wrong, quiet=True)
    assert f"expected {wrong}" in str(info.value)
    assert f"is {sha256((root / 'a.zip').read_bytes())}" in str(info.value)
    assert leftovers(tmp_path / "out") == []


def test_wrong_md5_raises(server, tmp_path):
    root, url, _ = server
    (root / "a.bin").write_bytes(b"x" * 1000)
    with pytest.raises(ChecksumError, match="md5 of .* expected 00000000000000000000000000000000"):
        download(f"{url}/a.bin", tmp_path / "a.bin", md5="0" * 32, quiet=True)
    assert not (tmp_path / "a.bin").exists()
    good = hashlib.md5(b"x" * 1000).hexdigest()
    assert download(f"{url}/a.bin", tmp_path / "a.bin", md5=good, quiet=True).read_bytes() == b"x" * 1000


def test_http_error_is_a_download_error_and_leaves_nothing(server, tmp_path):
    _, url, _ = server
    with pytest.raises(DownloadError, match=r"could not download .*/missing\.zip"):
        download(f"{url}/missing.zip", tmp_path / "out" / "missing.zip", quiet=True)
    assert leftovers(tmp_path / "out") == []


def test_malformed_checksum_argument():
    with pytest.raises(ValueError, match=r"sha256 == 'abc', must be a 64-character hex string"):
        download("http://127.0.0.1:9/x", "/tmp/never", sha256="abc")


def test_progress_bar_shows_unless_quiet(server, tmp_path, capsys):
    root, url, _ = server
    (root / "a.bin").write_bytes(b"y" * 5000)
    download(f"{url}/a.bin", tmp_path / "loud.bin")
    assert "loud.bin" in capsys.readouterr().err
    download(f"{url}/a.bin", tmp_path / "quiet.bin", quiet=True)
    assert capsys.readouterr().err == ""


def test_extract_refuses_paths_outside_the_target(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"../evil.txt": b"x"}))
    with pytest.raises(DataError, match="outside the target folder"):
        extract_archive(archive, tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists()


def test_extract_tar_gz(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("top/u.data")
        info.size = len(U_DATA)
        tf.addfile(info, io.BytesIO(U_DATA))
    assert (extract_archive(archive, tmp_path / "x") / "top" / "u.data").read_bytes() == U_DATA


# ----------------------------------------------------------------------------- load() end to end
def _serve_ml100k(monkeypatch, server, files, **overrides):
    """Point the ml-100k spec at a fake archive on the local server; returns the archive bytes."""
    root, url, _ = server
    payload = make_zip(files)
    (root / "ml-100k.zip").write_bytes(payload)
    spec = dataclasses.replace(registry.DATASETS["ml-100k"], url=f"{url}/ml-100k.zip",
                               archive_sha256=sha256(payload), archive_md5=None,
                               files={"u.data": sha256(U_DATA), "u.item": sha256(U_ITEM)},
                               download_checked=("u.data", "u.item"))
    monkeypatch.setitem(registry.DATASETS, "ml-100k", dataclasses.replace(spec, **overrides))
    return payload


def test_load_downloads_checks_and_extracts_into_the_cache(monkeypatch, server, tmp_path):
    _, _, requests = server
    _serve_ml100k(monkeypatch, server, {"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM})
    data = datasets.load("ml-100k", quiet=True)
    assert len(data) == 3 and data.values.tolist() == [3, 3, 1]
    cache = tmp_path / "cache"
    assert leftovers(cache) == ["ml-100k", "u.data", "u.item"]  # <folder>/<original files>, nothing else
    assert datasets.load_item_names("ml-100k") == {242: "Kolya (1996)"}
    assert len(datasets.load("ml-100k", quiet=True)) == 3
    assert requests == ["/ml-100k.zip"]  # the second load came from the cache


def test_archive_without_a_top_folder(monkeypatch, server, tmp_path):
    _serve_ml100k(monkeypatch, server, {"u.data": U_DATA, "u.item": U_ITEM, "README": b"hi"})
    assert len(datasets.load("ml-100k", quiet=True)) == 3
    assert leftovers(tmp_path / "cache" / "ml-100k") == ["README", "u.data", "u.item"]


def test_wrong_archive_checksum_leaves_nothing_in_the_cache(monkeypatch, server, tmp_path):
    _serve_ml100k(monkeypatch, server, {"ml-100k/u.data": U_DATA}, archive_sha256="f" * 64)
    with pytest.raises(ChecksumError, match="expected f{64}"):
        datasets.load("ml-100k", quiet=True)
    assert leftovers(tmp_path / "cache") == []


def test_extracted_file_checksum_mismatch_leaves_nothing(monkeypatch, server, tmp_path):
    tampered = U_DATA.replace(b"\t3\t", b"\t5\t")
    _serve_ml100k(monkeypatch, server, {"ml-100k/u.data": tampered, "ml-100k/u.item": U_ITEM})
    with pytest.raises(ChecksumError, match=rf"u\.data: sha256 {sha256(tampered)}, expected {sha256(U_DATA)}"):
        datasets.load("ml-100k", quiet=True)
    assert leftovers(tmp_path / "cache") == []


def test_archive_without_the_needed_files(monkeypatch, server, tmp_path):
    _serve_ml100k(monkeypatch, server, {"ml-100k/README": b"no data here"})
    with pytest.raises(DataError, match=r"does not contain the files the ml-100k loader needs \(u\.data\)"):
        datasets.load("ml-100k", quiet=True)
    assert leftovers(tmp_path / "cache") == []


def test_unreachable_server_is_dataset_not_found_with_the_reason(monkeypatch, server):
    _serve_ml100k(monkeypatch, server, {"ml-100k/u.data": U_DATA},
                  url="http://127.0.0.1:9/ml-100k.zip")  # discard port: connection refused
    with pytest.raises(DatasetNotFoundError, match=r"4\. download: could not download http://127\.0\.0\.1:9/") as info:
        datasets.load("ml-100k", quiet=True)
    assert isinstance(info.value.__cause__, DownloadError)


def test_download_false_never_touches_the_network(monkeypatch, server):
    _, _, requests = server
    _serve_ml100k(monkeypatch, server, {"ml-100k/u.data": U_DATA})
    with pytest.raises(DatasetNotFoundError, match="skipped"):
        datasets.load("ml-100k", download=False)
    assert requests == []


def test_archive_lacking_a_checked_file_is_rejected(monkeypatch, server, tmp_path):
    _serve_ml100k(monkeypatch, server, {"ml-100k/u.data": U_DATA}, archive_sha256=None)  # no u.item
    with pytest.raises(ChecksumError, match=r"u\.item: missing, expected sha256"):
        datasets.load("ml-100k", quiet=True)
    assert leftovers(tmp_path / "cache") == []
