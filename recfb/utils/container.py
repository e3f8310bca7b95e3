"""The one file container of recfb: an ``.npz`` of arrays plus embedded JSON metadata (the
``__metadata__`` member) holding the format name and version, each array's dtype, shape and
sha256. Model files (:meth:`recfb.models.Recommender.save`), training checkpoints
(:mod:`recfb.train.loop`) and serving indices' arrays are written and read through it.

Reading never unpickles and reads nothing it has not sized first: the metadata is read (capped)
before any other member, every member's declared size is checked against the metadata's
dtype and shape before it is decompressed, and every array's checksum is verified. Every
failure is a :class:`recfb.utils.errors.FormatError` naming the file and the problem.

Hand-written on top of :mod:`zipfile` and :mod:`numpy.lib.format` because ``np.load`` checks
neither sizes before decompressing nor checksums, and no library offers both without pickle.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import struct
import zipfile
import zlib

import numpy as np
import scipy.sparse as sp

from recfb._version import __version__
from recfb.utils.errors import FormatError
from recfb.utils.state import atomic_savez

METADATA_KEY = "__metadata__"


def write_container(path, arrays: dict, meta: dict, fmt: str, version: int):
    """Write ``arrays`` (name -> array) with ``meta`` (JSON-able) to ``path`` (atomically) or
    to a writable binary file object; adds ``format``, ``format_version``, ``sha256`` and
    ``arrays`` (dtype, shape) to the metadata. Returns the path (or the file object)."""
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # (0-d arrays stay 0-d)
    meta = {**meta, "format": fmt, "format_version": version,
            "sha256": {k: digest(v) for k, v in arrays.items()},
            "arrays": {k: [v.dtype.str, list(v.shape)] for k, v in arrays.items()}}
    arrays[METADATA_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return path
    return atomic_savez(path, arrays)


def file_label(file) -> str:
    """How an error names ``file`` (a path, or a file object's name)."""
    return str(getattr(file, "name", "<file object>")) if hasattr(file, "read") else str(file)


#: what :mod:`zipfile` raises on a damaged archive: besides BadZipFile, a flipped flag bit
#: reads as encryption (RuntimeError, NotImplementedError), a flipped method byte as an
#: unsupported compression (NotImplementedError), a damaged stream as zlib/lzma errors
ZIP_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError,
                   TypeError, SyntaxError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError,
                   struct.error, OverflowError)

#: cap on the embedded JSON metadata's size
_MAX_METADATA_BYTES = 16 << 20
#: room for an .npy header beyond the array's bytes (headers are a few hundred bytes)
_NPY_HEADER_SLACK = 1 << 16


def read_npz(raw: bytes, label: str, what: str, expected: dict | None = None) -> dict:
    """The arrays of an ``.npz`` held in ``raw`` (no pickle), reading nothing it has not
    sized first: every member's declared uncompressed size must be at most its expected
    size (``expected``: name -> (dtype str, shape), else the file's own size), and each .npy
    header's shape must account for exactly the member's bytes, before any data is read."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        infos = zf.infolist()
    except ZIP_READ_ERRORS as exc:
        raise FormatError(f"{label} is not a readable {what} file (truncated or not an .npz): {exc}") from None
    names = [i.filename for i in infos]
    if len(set(names)) != len(names) or not all(n.endswith(".npy") for n in names):
        raise FormatError(f"{label}: the archive's members {names[:5]} are not distinct .npy files.")
    arrays = {}
    for info in infos:
        name = info.filename[:-4]
        if expected is not None:
            spec = expected.get(name)
            if spec is None:
                raise FormatError(f"{label}: array {name!r} is not in the metadata; file tampered with.")
            cap = _spec_nbytes(spec, label, name) + _NPY_HEADER_SLACK
        else:
            cap = max(len(raw), _MAX_METADATA_BYTES) if name == METADATA_KEY else len(raw)
        if info.file_size > cap:
            raise FormatError(f"{label}: member {info.filename!r} declares {info.file_size} bytes uncompressed, more "
                              f"than the {cap} its metadata allows; refusing to decompress it.")
        try:
            with zf.open(info) as fh:
                arrays[name] = _read_npy(fh, info.file_size)
        except FormatError:
            raise
        except ZIP_READ_ERRORS as exc:
            raise FormatError(f"{label}: member {info.filename!r} is not a readable array "
                              f"({type(exc).__name__}: {exc}).") from None
        if expected is not None and [arrays[name].dtype.str, list(arrays[name].shape)] != list(expected[name]):
            raise FormatError(f"{label}: array {name!r} is {arrays[name].dtype.str} {arrays[name].shape}, the metadata "
                              f"says {expected[name]}; file tampered with.")
    return arrays


def _spec_nbytes(spec, label, name) -> int:
    try:
        dtype, shape = np.dtype(spec[0]), [int(x) for x in spec[1]]
        if dtype.hasobject or any(x < 0 for x in shape):
            raise ValueError("object dtype or negative extent")
        return int(np.prod(shape, dtype=object)) * dtype.itemsize
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise FormatError(f"{label}: the metadata's entry for array {name!r} is not (dtype, shape): {exc}") from None


def _read_npy(fh, size: int) -> np.ndarray:
    """One .npy member, its header checked against ``size`` before its data is read."""
    from numpy.lib import format as npy
    version = npy.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = npy.read_array_header_2_0(fh)
    else:
        raise ValueError(f"npy format version {version}")
    if dtype.hasobject:
        raise FormatError(f"an array of dtype {dtype} (objects) cannot be read without pickle.")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if fh.tell() + nbytes != size:  # the header's shape must account for exactly the member's bytes
        raise FormatError(f"an array header declares shape {shape} ({nbytes} bytes) in a member of {size} bytes.")
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        n = fh.readinto(view[got:])
        if not n:
            raise FormatError(f"an array of shape {shape} is truncated ({got} of {nbytes} bytes).")
        got += n
    a = np.frombuffer(buf, dtype=dtype)
    return a.reshape(shape, order="F" if fortran else "C")


def read_container(path, fmt: str, version: int, what: str, min_version: int = 0):
    """The arrays and metadata of a file :func:`write_container` wrote (path or binary file
    object), its sizes, format, version (``min_version`` .. ``version``) and checksums verified."""
    label = file_label(path)
    try:
        if hasattr(path, "read"):
            raw = path.read()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        raise FormatError(f"{label} is not a readable {what} file: {exc}") from None
    if not isinstance(raw, bytes):
        raise TypeError(f"the file object must be opened in binary mode, got {type(raw).__name__} from read().")
    # the metadata first (capped), then every other array sized by it
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        has_meta = METADATA_KEY + ".npy" in zf.namelist()
    except ZIP_READ_ERRORS as exc:
        raise FormatError(f"{label} is not a readable {what} file (truncated or not an .npz): {exc}") from None
    if not has_meta:
        raise FormatError(f"{label} has no recfb metadata; it is not a {what} file.")
    meta_raw = _read_member(raw, zf, METADATA_KEY, label, what)
    try:
        meta = json.loads(meta_raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{label}: metadata is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{label}: metadata is a JSON {type(meta).__name__}, not an object.")
    if meta.get("format") != fmt:
        raise FormatError(f"{label} holds {meta.get('format')!r}, not a {what} ({fmt!r}).")
    found = meta.get("format_version")
    if not isinstance(found, int) or isinstance(found, bool) or found > version:
        raise FormatError(f"{label} was written in format version {found!r}, newer than this recfb "
                          f"({__version__}) reads (<= {version}); upgrade recfb.")
    if found < min_version:
        raise FormatError(f"{label} was written by an older recfb in format version {found}; this recfb "
                          f"({__version__}) reads versions {min_version} to {version} of {what} files.")
    sums, specs = meta.get("sha256", {}), meta.get("arrays")
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise FormatError(f"{label}: the metadata's sha256 entry is not an object of digests.")
    if specs is not None:
        if not isinstance(specs, dict):
            raise FormatError(f"{label}: the metadata's arrays entry is not an object.")
        specs = {**specs, METADATA_KEY: ["|u1", [int(meta_raw.size)]]}
    arrays = read_npz(raw, label, what, expected=specs)
    arrays.pop(METADATA_KEY, None)
    if set(sums) != set(arrays):
        raise FormatError(f"{label}: arrays {sorted(arrays)} do not match the metadata {sorted(sums)}; file tampered with.")
    for k, v in arrays.items():
        if digest(v) != sums[k]:
            raise FormatError(f"{label}: checksum mismatch for array {k!r}; the file is corrupted or was tampered with.")
    return arrays, meta


def _read_member(raw, zf, name, label, what) -> np.ndarray:
    info = zf.getinfo(name + ".npy")
    if info.file_size > _MAX_METADATA_BYTES:
        raise FormatError(f"{label}: its metadata declares {info.file_size} bytes; refusing to decompress it.")
    try:
        with zf.open(info) as fh:
            return _read_npy(fh, info.file_size)
    except FormatError:
        raise
    except ZIP_READ_ERRORS as exc:
        raise FormatError(f"{label} is not a readable {what} file (truncated?): {type(exc).__name__}: {exc}") from None


def digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def pack_csr(prefix: str, M: sp.csr_matrix) -> dict:
    """Arrays that store a CSR matrix in a state dict."""
    M = sp.csr_matrix(M)
    return {f"{prefix}.data": M.data, f"{prefix}.indices": M.indices, f"{prefix}.indptr": M.indptr,
            f"{prefix}.shape": np.asarray(M.shape, np.int64)}


def unpack_csr(prefix: str, arrays: dict, shape: tuple | None = None) -> sp.csr_matrix:
    """The CSR matrix :func:`pack_csr` stored, its structure checked (ValueError naming the
    problem): ``shape`` (when given) matches, indptr runs from 0 to nnz without decreasing,
    every column index is in range, data is finite float32."""
    try:
        data, indices, indptr, stored = (arrays[f"{prefix}.{k}"] for k in ("data", "indices", "indptr", "shape"))
    except KeyError as exc:
        raise ValueError(f"the CSR matrix {prefix!r} lacks its {exc} array.") from None
    if stored.shape != (2,) or stored.dtype.kind not in "iu" or stored.min() < 0:
        raise ValueError(f"{prefix}.shape is {stored!r}, expected two non-negative ints.")
    n_rows, n_cols = (int(x) for x in stored)
    if shape is not None and (n_rows, n_cols) != tuple(shape):
        raise ValueError(f"the CSR matrix {prefix!r} has shape {(n_rows, n_cols)}, expected {tuple(shape)}.")
    if data.dtype != np.float32 or data.ndim != 1 or not np.isfinite(data).all():
        raise ValueError(f"{prefix}.data must be finite float32 (1-D), got {data.dtype} {data.shape}.")
    for name, a in (("indices", indices), ("indptr", indptr)):
        if a.dtype not in (np.int32, np.int64) or a.ndim != 1:
            raise ValueError(f"{prefix}.{name} must be 1-D int32/int64, got {a.dtype} {a.shape}.")
    if indices.size != data.size or indptr.size != n_rows + 1 or indptr[0] != 0 or indptr[-1] != data.size \
            or np.any(np.diff(indptr) < 0):
        raise ValueError(f"the CSR matrix {prefix!r} has an inconsistent indptr/indices/data.")
    if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
        raise ValueError(f"{prefix}.indices holds column ids outside 0..{n_cols - 1}.")
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
