"""Download with checksum verification, and safe archive extraction.

``download`` streams to a temporary file next to ``dest``, hashes while it writes, and
renames onto ``dest`` only when every check passed: an interrupted or corrupted download
never leaves a file that a later run could mistake for the real one.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from recfb.utils.errors import DataError

__all__ = ["ChecksumError", "DownloadError", "download", "extract_archive", "file_digest"]

_CHUNK = 1 << 16


class ChecksumError(DataError):
    """A file's checksum differs from the recorded one (corrupted, truncated or tampered with)."""


class DownloadError(OSError):
    """A URL could not be fetched (network error, HTTP error, refused connection)."""


def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_hex(value, name: str, length: int):
    if value is None:
        return None
    if not (isinstance(value, str) and len(value) == length and all(c in "0123456789abcdefABCDEF" for c in value)):
        raise ValueError(f"{name} == {value!r}, must be a {length}-character hex string or None.")
    return value.lower()


def download(url: str, dest, sha256: str | None = None, quiet: bool = False, *, md5: str | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch ``url`` into the file ``dest`` and return its path.

    Parameters
    ----------
    url : str
        ``http(s)://`` or ``file://`` URL.
    dest : path-like
        Target file; its folder is created. Written atomically (temporary file + rename).
    sha256 : str, optional
        Expected SHA-256 (hex). A mismatch raises :class:`ChecksumError` and leaves no file.
    quiet : bool, default False
        Hide the tqdm progress bar.
    md5 : str, optional
        Expected MD5 (hex), for sources that publish only that (GroupLens).
    timeout : float, default 60
        Seconds to wait for the server on connect and on each read.

    Raises
    ------
    DownloadError
        The URL could not be fetched, or the body was shorter than its Content-Length.
    ChecksumError
        The body's checksum differs from ``sha256`` / ``md5``; the message gives both values.
    """
    sha256 = _check_hex(sha256, "sha256", 64)
    md5 = _check_hex(md5, "md5", 32)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    from recfb import __version__

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    hashers = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": f"recfb/{__version__}"})
            try:
                response = urllib.request.urlopen(request, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DownloadError(f"could not download {url}: {reason}") from exc
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                          disable=quiet, leave=False) as bar:
                    try:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            for h in hashers.values():
                                h.update(chunk)
                            size += len(chunk)
                            bar.update(len(chunk))
                    except OSError as exc:  # connection reset, timeout mid-body
                        raise DownloadError(f"download of {url} broke off after {size:,} bytes: {exc}") from exc
        if total is not None and size != total:
            raise DownloadError(f"download of {url} is incomplete: got {size:,} of {total:,} bytes.")
        for algorithm, expected in (("sha256", sha256), ("md5", md5)):
            if expected is not None:
                got = hashers[algorithm].hexdigest()
                if got != expected:
                    raise ChecksumError(f"{algorithm} of {url} is {got}, expected {expected}; the download is "
                                        f"corrupted or the file changed upstream. Nothing was saved.")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    """Reject absolute paths and ``..`` (zip-slip) in archive member names."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{archive}: member {name!r} would be extracted outside the target folder; refusing.")
    return path


def extract_archive(archive, dest_dir) -> Path:
    """Extract a ``.zip`` or ``.tar[.gz|.bz2|.xz]`` archive into ``dest_dir``; return ``dest_dir``.

    Member names that escape ``dest_dir`` (absolute, ``..``) raise :class:`DataError`, as do
    links in tar archives. zip members are CRC-checked by :mod:`zipfile` while extracting.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _safe_member(info.filename, archive)
                zf.extractall(dest_dir)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _safe_member(m.name, archive)
                    if not (m.isfile() or m.isdir()):
                        raise DataError(f"{archive}: member {m.name!r} is a link or device; refusing to extract.")
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest_dir, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tf.extractall(dest_dir, members=members)
        else:
            raise DataError(f"{archive} is neither a zip nor a tar archive; cannot extract it.")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive} is a corrupted archive: {exc}") from None
    return dest_dir


def move_tree(src: Path, dest: Path) -> None:
    """Move the files of folder ``src`` into folder ``dest`` (created), replacing same-named files."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(src, ignore_errors=True)
