"""Finding a dataset's files: ``data_dir``, ``$RECFB_DATA_DIR``, the user cache, then a download.

The folder layout is ``<root>/<folder>/<original files>`` (``ml-100k/u.data``,
``coat/train.ascii``). The first root that holds every file the loader needs wins; when none
does and downloading is allowed, the canonical archive is fetched into the cache, checked and
extracted there. When everything fails, :class:`DatasetNotFoundError` lists each place looked.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from recfb.datasets.download import (
    ChecksumError,
    DownloadError,
    extract_archive,
    file_digest,
    move_tree,
)
from recfb.datasets.download import download as _download
from recfb.datasets.registry import DATASETS, DatasetSpec, get_spec
from recfb.utils.errors import DataError, DatasetNotFoundError

__all__ = ["cache_dir", "load", "load_item_names", "locate", "verify"]

DATA_DIR_ENV = "RECFB_DATA_DIR"
CACHE_DIR_ENV = "RECFB_CACHE_DIR"


def cache_dir() -> Path:
    """The user cache: ``$RECFB_CACHE_DIR``, else ``$XDG_CACHE_HOME/recfb``, else ``~/.cache/recfb``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "recfb"
    return Path.home() / ".cache" / "recfb"


def _search(spec: DatasetSpec, root: Path, label: str, attempts: list, *, direct: bool = False) -> Path | None:
    """The dataset folder under ``root`` (or ``root`` itself when ``direct``), else None; each
    place looked at is appended to ``attempts`` with the reason it did not qualify."""
    candidates = [root / name for name in spec.folder_names] + ([root] if direct else [])
    incomplete = []
    for folder in candidates:
        if folder.is_dir():
            missing = spec.missing(folder)
            if not missing:
                return folder
            if folder != root:
                incomplete.append(f"{folder} exists but lacks {', '.join(missing)}")
    if incomplete:
        attempts.append(f"{label}: {'; '.join(incomplete)}")
    else:
        names = spec.folder_names
        where = str(root / names[0]) if len(names) == 1 else f"{root}/{{{'|'.join(names)}}}"
        attempts.append(f"{label}: {where}: " + ("no such folder" if root.is_dir() else f"{root} does not exist"))
    return None


def _archive_root(extracted: Path, spec: DatasetSpec) -> Path:
    """The folder of an extracted archive that holds the dataset's files (archives differ in
    whether they wrap them in a top folder)."""
    anchor = PurePosixPath(spec.required[0][0])
    hits = sorted(extracted.rglob(anchor.name), key=lambda p: len(p.parts))
    for hit in hits:
        root = hit.parents[len(anchor.parts) - 1]
        if not spec.missing(root):
            return root
    raise DataError(f"the archive from {spec.url} does not contain the files the {spec.name} loader needs "
                    f"({', '.join(spec.missing(extracted))}); has the archive layout changed upstream?")


def _check_files(spec: DatasetSpec, folder: Path, names, *, source: str, require: bool = False) -> None:
    """Compare the SHA-256 of ``names`` (those present, or all of them when ``require``) with the registry."""
    mismatches = []
    for rel in names:
        expected = spec.files.get(rel)
        path = folder / rel
        if expected is None:
            continue
        if not path.is_file():
            if require:
                mismatches.append(f"{rel}: missing, expected sha256 {expected}")
            continue
        got = file_digest(path)
        if got != expected:
            mismatches.append(f"{rel}: sha256 {got}, expected {expected}")
    if mismatches:
        raise ChecksumError(f"{spec.name}: {len(mismatches)} file(s) from {source} differ from the recorded "
                            f"checksums:\n  " + "\n  ".join(mismatches))


def fetch(spec: DatasetSpec, quiet: bool = False) -> Path:
    """Download ``spec.url`` into the cache, check it, extract it as ``<cache>/<folder>``."""
    if spec.url is None:
        raise DataError(f"{spec.name} has no download URL: {spec.how_to_get}")
    if not (spec.archive_sha256 or spec.archive_md5 or spec.download_checked):
        raise DataError(f"{spec.name}: refusing to download {spec.url} with nothing to check it against "
                        f"(no archive checksum and no file checksums in the registry).")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / spec.folder
    with tempfile.TemporaryDirectory(prefix=f".{spec.folder}-", dir=cache) as tmp:
        name = PurePosixPath(urlparse(spec.url).path).name or f"{spec.folder}.archive"
        archive = _download(spec.url, Path(tmp) / name, sha256=spec.archive_sha256, md5=spec.archive_md5,
                            quiet=quiet)
        root = _archive_root(extract_archive(archive, Path(tmp) / "extracted"), spec)
        _check_files(spec, root, spec.download_checked, source=spec.url, require=True)
        move_tree(root, target)  # only checked files reach the cache; the temp folder goes away
    return target


def locate(name: str, data_dir=None, download: bool = True, quiet: bool = False) -> Path | None:
    """The folder holding dataset ``name``'s files, following the lookup order; None for
    generated datasets. Raises :class:`DatasetNotFoundError` saying where it looked."""
    spec = get_spec(name)
    if spec.generated:
        return None
    attempts: list = []
    if data_dir is not None:
        found = _search(spec, Path(data_dir).expanduser(), "data_dir argument", attempts, direct=True)
        if found:
            return found
    else:
        attempts.append("data_dir argument: not given")
    env = os.environ.get(DATA_DIR_ENV, "")
    roots = [r for r in env.split(os.pathsep) if r.strip()]
    for root in roots:
        found = _search(spec, Path(root).expanduser(), f"${DATA_DIR_ENV}", attempts)
        if found:
            return found
    if not roots:
        attempts.append(f"${DATA_DIR_ENV}: not set")
    found = _search(spec, cache_dir(), "user cache", attempts)
    if found:
        return found
    cause = None
    if spec.url is None:
        attempts.append(f"download: not possible, {spec.name} has no official archive")
    elif not download:
        attempts.append(f"download: skipped (download=False); source {spec.url}")
    else:
        try:
            return fetch(spec, quiet=quiet)
        except DownloadError as exc:
            attempts.append(f"download: {exc}")
            cause = exc
    raise DatasetNotFoundError(_not_found_message(spec, attempts)) from cause


def _not_found_message(spec: DatasetSpec, attempts: list) -> str:
    example = spec.required[0][0]
    lines = [f"dataset {spec.name!r} was not found. Looked in:"]
    lines += [f"  {k}. {a}" for k, a in enumerate(attempts, start=1)]
    lines.append(f"To get it: {spec.how_to_get}")
    lines.append(f"Then place the files so that <dir>/{spec.folder}/{example} exists and pass data_dir=<dir> "
                 f"or set {DATA_DIR_ENV}=<dir>" + (f", or call load({spec.name!r}, download=True) to fetch it into "
                                                 f"{cache_dir()}." if spec.url else "."))
    return "\n".join(lines)


def verify(name: str, data_dir=None) -> Path:
    """Check the SHA-256 of every registered file present in the dataset's folder (found by the
    lookup order, without downloading); return the folder. Raises :class:`ChecksumError`."""
    spec = get_spec(name)
    folder = locate(name, data_dir=data_dir, download=False)
    if folder is not None:
        _check_files(spec, folder, spec.files, source=str(folder))
    return folder


def load(name: str, data_dir=None, download: bool = True, quiet: bool = False, verify: bool = False):
    """Load a known dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets` (``"ml-100k"``, ``"coat"``, ``"synthetic"`` ...).
    data_dir : path-like, optional
        A folder holding ``<folder>/<original files>`` (or the dataset folder itself). Looked at
        first, then ``$RECFB_DATA_DIR`` (``os.pathsep``-separated list allowed), then the user
        cache (:func:`cache_dir`).
    download : bool, default True
        When the files are nowhere local, download the canonical archive into the cache
        (checksums always checked). Datasets without an official archive cannot be downloaded.
    quiet : bool, default False
        No progress bar.
    verify : bool, default False
        Check the SHA-256 of local files against the registry first (costs a read of every file).

    Returns
    -------
    Interactions, or a dataset-specific dataclass (``CoatData``, ``ModClothData``); see
    ``info(name)["returns"]``.

    Raises
    ------
    DatasetNotFoundError
        Nowhere found; the message lists every place looked and how to get the data.
    DataError
        A file is truncated or malformed (message names file and line); ``ChecksumError``
        (a DataError) when a checksum differs.
    """
    spec = get_spec(name)
    folder = locate(name, data_dir=data_dir, download=download, quiet=quiet)
    if verify and folder is not None:
        _check_files(spec, folder, spec.files, source=str(folder))
    return spec.loader(folder)


def load_item_names(name: str, data_dir=None, download: bool = True, quiet: bool = False) -> dict:
    """External item id -> title (movie titles for MovieLens, artist names for Last.fm)."""
    spec = get_spec(name)
    if spec.item_names is None:
        have = [s.name for s in DATASETS.values() if s.item_names is not None]
        raise ValueError(f"{name!r} has no item names; datasets with names: {', '.join(have)}.")
    return spec.item_names(locate(name, data_dir=data_dir, download=download, quiet=quiet))
