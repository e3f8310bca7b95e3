"""Saving and loading an ItemIndex: a directory of plain files, never a pickle.

    <path>/metadata.json   format, version, kind, metric, parameters, versions, sha256 per file
    <path>/index.faiss     faiss.write_index of the CPU index (embedding indices)
    <path>/model.npz       a recfb model file (item-item indices; recfb.load reads it)
    <path>/arrays.npz      item ids and the user table, in recfb's container
                           (recfb.utils.container: sized before read, sha256 per array)

The faiss file is a standard one (any faiss, in any language, can read it). Loading checks,
in order: the metadata parses and names this format, its format version is one this recfb
reads, the faiss that wrote the index is not newer than the installed one, every file's
sha256 matches, and the loaded index agrees with the metadata (size, dimension, metric).
Any failure raises FormatError naming the file and the problem.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recfb._version import __version__
from recfb.serving import _faiss
from recfb.serving._params import KINDS, METRICS, resolve_device
from recfb.utils.container import pack_csr, read_container, read_npz, write_container
from recfb.utils.errors import DataError, FormatError

FORMAT = "recfb-item-index"
#: 2: arrays.npz in recfb's container (version 1 indices, a plain npz there, still load)
FORMAT_VERSION = 2
ARRAYS_FORMAT = "recfb-index-arrays"
META = "metadata.json"
INDEX_FILE = "index.faiss"
MODEL_FILE = "model.npz"
ARRAYS_FILE = "arrays.npz"


def save_index(index, path) -> Path:
    faiss = _faiss.faiss_module()
    path = Path(path)
    if path.exists() and not (path.is_dir() and (path / META).exists()):
        raise FileExistsError(f"{path} exists and is not a recfb index directory; refusing to overwrite it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if index._model is not None:
            index._model.save(tmp / MODEL_FILE)
        else:
            faiss.write_index(index._faiss, str(tmp / INDEX_FILE))
        arrays = {}
        if index.item_ids is not None:
            arrays["item_ids"] = index.item_ids
        users = index.users
        if users is not None:
            if users.user_ids is not None:
                arrays["user_ids"] = users.user_ids
            if users.user_vectors is not None:
                arrays["user_vectors"] = users.user_vectors
            if users.user_items is not None:
                arrays.update(pack_csr("user_items", users.user_items))
        write_container(tmp / ARRAYS_FILE, arrays, {}, ARRAYS_FORMAT, 1)
        files = sorted(p.name for p in tmp.iterdir())
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": index.kind,
            "metric": index.metric,
            "query_kind": index.query_kind,
            "n_items": index.n_items,
            "dim": index.dim,
            "params": index.params,
            "model_class": index.model_class,
            "calibration": index.calibration,
            "shard": index.shard,
            "has_users": users is not None,
            "recfb_version": __version__,
            "faiss_version": faiss.__version__,
            "numpy_version": np.__version__,
            "sha256": {name: _file_digest(tmp / name) for name in files},
        }
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if path.exists():  # swap in the new directory, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "index")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_metadata(path) -> dict:
    """Parse and check ``metadata.json`` (format and versions); no checksums yet."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such index: {path}")
    if not path.is_dir():
        hint = " It looks like a recfb model: write an index with `recfb export`." if _is_zip(path) else ""
        raise FormatError(f"{path} is a file, not a recfb index directory (with {META}).{hint}")
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        raise FormatError(f"{path} has no {META}; it is not a recfb index directory.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path / META} is not valid JSON ({exc}); the index is corrupted.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise FormatError(f"{path} holds {found!r}, not a recfb item index ({FORMAT!r}).")
    version = meta.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise FormatError(f"{path} was written in index format version {version!r}; this recfb ({__version__}) "
                          f"reads versions 1..{FORMAT_VERSION}. Upgrade recfb or re-export the index.")
    written, installed = _major_minor(meta.get("faiss_version")), _major_minor(_faiss.faiss_module().__version__)
    if written is None or (installed is not None and written > installed):
        raise FormatError(f"{path} was written by faiss {meta.get('faiss_version')!r}, newer than the installed "
                          f"faiss {_faiss.faiss_module().__version__}; upgrade faiss or re-export the index.")
    for key in ("kind", "metric", "n_items", "sha256"):
        if key not in meta:
            raise FormatError(f"{path / META} lacks {key!r}; the index is corrupted.")
    checks = {"kind": str, "metric": str, "n_items": int, "sha256": dict, "dim": (int, type(None)),
              "params": (dict, type(None)), "query_kind": (str, type(None)), "has_users": (bool, type(None)),
              "model_class": (str, type(None)), "calibration": (dict, type(None))}
    for key, types in checks.items():
        value = meta.get(key)
        if not isinstance(value, types) or (isinstance(value, bool) and key in ("n_items", "dim")):
            raise FormatError(f"{path / META}: {key} == {value!r} is not a {types}; the index is corrupted.")
    if meta["n_items"] < 0 or (meta.get("dim") is not None and meta["dim"] < 1):
        raise FormatError(f"{path / META}: n_items == {meta['n_items']}, dim == {meta.get('dim')} out of range.")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta["sha256"].items()):
        raise FormatError(f"{path / META}: sha256 must map file names to digests.")
    if any("/" in k or "\\" in k or k.startswith(".") for k in meta["sha256"]):
        raise FormatError(f"{path / META}: file names {sorted(meta['sha256'])} are not plain names.")
    return meta


def load_index(cls, path, device: str = "auto"):
    path = Path(path)
    meta = read_metadata(path)
    if meta["kind"] not in KINDS or meta["metric"] not in METRICS:
        raise FormatError(f"{path}: unknown kind {meta['kind']!r} or metric {meta['metric']!r} in the metadata.")
    sums = meta["sha256"]
    present = {p.name for p in path.iterdir() if p.name != META and not p.name.startswith(".")}
    if set(sums) != present:
        raise FormatError(f"{path}: files {sorted(present)} do not match the metadata {sorted(sums)}; "
                          "the index is incomplete or was tampered with.")
    for name, digest in sums.items():
        if _file_digest(path / name) != digest:
            raise FormatError(f"{path / name}: checksum mismatch; the file is corrupted or was tampered with.")
    arrays = _read_arrays(path / ARRAYS_FILE, meta["format_version"])
    n_items = int(meta["n_items"])
    ids = arrays.get("item_ids")
    if ids is not None and (ids.ndim != 1 or ids.size != n_items):
        raise FormatError(f"{path / ARRAYS_FILE}: item_ids has shape {ids.shape}, expected ({n_items},).")
    device = resolve_device(device, meta["kind"])
    if meta.get("query_kind") == "history":
        if MODEL_FILE not in sums:
            raise FormatError(f"{path}: an item-item index needs {MODEL_FILE}.")
        from recfb.models.base import load as load_model
        model = load_model(path / MODEL_FILE)
        if model.n_items_ != n_items:
            raise FormatError(f"{path}: the model has {model.n_items_} items, the metadata {n_items}.")
        index = cls(kind=meta["kind"], metric=meta["metric"], n_items=n_items, model=model,
                    item_ids=arrays.get("item_ids"), params=meta.get("params"), device="cpu", shard=meta.get("shard"))
    else:
        if INDEX_FILE not in sums:
            raise FormatError(f"{path}: an embedding index needs {INDEX_FILE}.")
        faiss = _faiss.faiss_module()
        try:
            fi = faiss.read_index(str(path / INDEX_FILE))
        except RuntimeError as exc:
            raise FormatError(f"{path / INDEX_FILE} is not a readable faiss index: {str(exc).splitlines()[0]}") from None
        if fi.ntotal != n_items or fi.d != meta.get("dim") or fi.metric_type != _faiss.faiss_metric(meta["metric"]):
            raise FormatError(f"{path}: the faiss index ({fi.ntotal} x {fi.d}, metric {fi.metric_type}) does not "
                              f"match the metadata ({n_items} x {meta.get('dim')}, {meta['metric']}).")
        index = cls(kind=meta["kind"], metric=meta["metric"], n_items=n_items, dim=fi.d, faiss_index=fi,
                    item_ids=arrays.get("item_ids"), params=meta.get("params"), device=device, shard=meta.get("shard"),
                    calibration=meta.get("calibration"))
    if meta.get("has_users"):
        items = None
        if "user_items.indptr" in arrays:
            try:
                shape = tuple(int(x) for x in arrays["user_items.shape"])
                # structure and index bounds: check_csr in attach_users (DataError naming the index)
                items = sp.csr_matrix((arrays["user_items.data"], arrays["user_items.indices"],
                                       arrays["user_items.indptr"]), shape=shape)
            except (KeyError, TypeError, ValueError) as exc:
                raise FormatError(f"{path / ARRAYS_FILE}: the stored user rows are not a CSR matrix: {exc}") from None
            if items.shape[1] != n_items:
                raise FormatError(f"{path / ARRAYS_FILE}: user_items has {items.shape[1]} columns, the index "
                                  f"{n_items} items.")
        vectors = arrays.get("user_vectors")
        if vectors is not None and (vectors.dtype != np.float32 or vectors.ndim != 2
                                    or vectors.shape[1] != (meta.get("dim") or vectors.shape[1])
                                    or not np.isfinite(vectors).all()):
            raise FormatError(f"{path / ARRAYS_FILE}: user_vectors is {vectors.dtype} {vectors.shape}, expected "
                              f"finite float32 (n_users, {meta.get('dim')}).")
        try:
            index.attach_users(user_items=items, user_vectors=vectors, user_ids=arrays.get("user_ids"))
        except DataError:  # check_csr's, naming the bad entry
            raise
        except (TypeError, ValueError, IndexError) as exc:
            raise FormatError(f"{path}: the stored users do not fit the index: {exc}") from None
    index.metadata_ = meta
    return index


def _read_arrays(file: Path, version: int) -> dict:
    """The index's arrays (no pickle; every member sized before it is decompressed; checksums
    per array from index format 2 on), none of them holding NaN or infinities."""
    if version >= 2:
        arrays, _ = read_container(file, ARRAYS_FORMAT, 1, "recfb index array")
    else:  # a version-1 index: a plain npz, sized member by member (its file digest is checked)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise FormatError(f"{file} is not a readable array file: {exc}") from None
        arrays = read_npz(raw, str(file), "recfb index array")
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise FormatError(f"{file}: array {name!r} holds NaN or infinite values.")
    return arrays


def _file_digest(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _major_minor(version):
    try:
        major, minor = str(version).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False
