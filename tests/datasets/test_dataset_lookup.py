"""Lookup order (data_dir, $RECFB_DATA_DIR, cache, download) and the not-found message."""
import os

import pytest

from recfb import datasets
from recfb.utils.errors import DatasetNotFoundError


def _ml100k(root, n_rows):
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("".join(f"{u}\t{u + 1}\t3\t88125094{u}\n" for u in range(1, n_rows + 1)))
    return root


def test_not_found_message_lists_every_place_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RECFB_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.load("ml-100k", data_dir=tmp_path / "arg", download=False)
    message = str(info.value)
    assert message.startswith("dataset 'ml-100k' was not found. Looked in:")
    assert f"data_dir argument: {tmp_path / 'arg' / 'ml-100k'}" in message
    assert f"$RECFB_DATA_DIR: {tmp_path / 'env' / 'ml-100k'}" in message
    assert f"user cache: {tmp_path / 'cache' / 'ml-100k'}" in message
    assert "download: skipped (download=False)" in message
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in message
    assert "set RECFB_DATA_DIR=<dir>" in message and "<dir>/ml-100k/u.data" in message
    assert isinstance(info.value, FileNotFoundError)  # catchable as the builtin


def test_not_found_without_official_archive_says_so(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.load("video")  # download=True, but there is nothing official to download
    message = str(info.value)
    assert "data_dir argument: not given" in message and "$RECFB_DATA_DIR: not set" in message
    assert "download: not possible, video has no official archive" in message
    assert "github.com/kang205/SASRec" in message and "<dir>/sasrec-video/Video.txt" in message


def test_incomplete_folder_is_reported_with_what_it_lacks(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.item").write_text("1|Toy Story (1995)|\n")
    with pytest.raises(DatasetNotFoundError, match=r"ml-100k exists but lacks u\.data"):
        datasets.load("ml-100k", data_dir=tmp_path, download=False)


def test_lookup_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    arg, env, cache = _ml100k(tmp_path / "arg", 1), _ml100k(tmp_path / "env", 2), _ml100k(tmp_path / "cache", 3)
    monkeypatch.setenv("RECFB_DATA_DIR", os.pathsep.join([str(tmp_path / "empty"), str(env)]))
    assert len(datasets.load("ml-100k", data_dir=arg, download=False)) == 1
    assert len(datasets.load("ml-100k", data_dir=tmp_path / "nowhere", download=False)) == 2
    assert len(datasets.load("ml-100k", download=False)) == 2
    monkeypatch.delenv("RECFB_DATA_DIR")
    assert datasets.locate("ml-100k", download=False) == cache / "ml-100k"
    assert len(datasets.load("ml-100k", download=False)) == 3


def test_data_dir_may_be_the_dataset_folder_itself(tmp_path):
    root = _ml100k(tmp_path, 2)
    assert len(datasets.load("ml-100k", data_dir=root / "ml-100k", download=False)) == 2


def test_folder_aliases_are_accepted(tmp_path):
    """The shared layout uses lastfm-hetrec2011/; the dataset name works as a folder too."""
    folder = tmp_path / "lastfm-2k"
    folder.mkdir()
    (folder / "user_artists.dat").write_bytes(b"userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n")
    data = datasets.load("lastfm-2k", data_dir=tmp_path, download=False)
    assert data.values.tolist() == [13883, 11690]


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    assert datasets.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("RECFB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.cache_dir() == tmp_path / "xdg" / "recfb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir() == tmp_path / "home" / ".cache" / "recfb"


def test_verify_reports_expected_and_actual_checksum(tmp_path):
    root = _ml100k(tmp_path, 2)
    with pytest.raises(datasets.ChecksumError, match=r"u\.data: sha256 [0-9a-f]{64}, expected 06416e59"):
        datasets.load("ml-100k", data_dir=root, download=False, verify=True)
    assert len(datasets.load("ml-100k", data_dir=root, download=False)) == 2  # verify is opt-in


def test_synthetic_needs_no_files():
    assert datasets.locate("synthetic") is None
    clicks = datasets.load("synthetic", download=False)
    assert clicks.shape == (1000, 500)
