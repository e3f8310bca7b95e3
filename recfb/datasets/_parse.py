"""Vectorised readers for the numeric text files that recommender datasets ship as.

numpy's C parser (``np.fromstring(..., sep=" ")``) reads the numbers; a byte-level pass
counts the fields of every line so that a truncated or malformed file is reported with the
file name and line number instead of silently shifting columns. Measured on this machine,
this is as fast as ``pandas.read_csv`` (ML-100K ``u.data``: 11 ms vs 13 ms), so there is one
code path and the same error messages whether or not pandas is installed.
"""
from __future__ import annotations

import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recfb.utils.errors import DataError

__all__ = ["NumericText", "read_lines", "read_numeric_text", "read_table"]

_INT64_MAX = np.iinfo(np.int64).max


@dataclass
class NumericText:
    """The numbers of a text file, flat, with the number of fields on each non-blank line."""

    path: Path
    values: np.ndarray        # all numbers in file order
    counts: np.ndarray        # fields per non-blank line (int64)
    line_numbers: np.ndarray  # 1-based line number in the file of each non-blank line

    def table(self, columns) -> np.ndarray:
        """The numbers as a (lines, ncols) array; every line must have exactly ncols fields.

        ``columns`` is a tuple of column names (used in messages) or an int count.
        """
        ncols = columns if isinstance(columns, int) else len(columns)
        what = f"{ncols}" if isinstance(columns, int) else f"{ncols} ({', '.join(columns)})"
        bad = self.counts != ncols
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{self.path}: line {int(self.line_numbers[row])} has {int(self.counts[row])} field(s), "
                f"expected {what}; is the file truncated or corrupted?"
            )
        return self.values.reshape(-1, ncols)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except (OSError, EOFError) as exc:  # gzip raises EOFError/BadGzipFile on truncation
        raise DataError(f"{path}: could not be read ({exc}); is the file truncated or corrupted?") from None


def _first_bad_token(text: str, line_numbers: np.ndarray, is_int: bool):
    """(line number, token) of the first field that does not parse; the error path only."""
    convert = int if is_int else float
    lines = text.split("\n")
    for ln in line_numbers.tolist():
        for token in lines[ln - 1].split():
            try:
                convert(token)
            except ValueError:
                return ln, token
    return None, None


def read_numeric_text(path, *, dtype=np.int64, skip_lines: int = 0, separator: bytes | None = None,
                      expected: str = "numbers") -> NumericText:
    """Read every whitespace-separated number of ``path`` (``.gz`` allowed).

    Parameters
    ----------
    path : path-like
    dtype : numpy dtype, default int64
        ``int64`` rejects decimals; use ``float64`` for real-valued files.
    skip_lines : int, default 0
        Header lines to skip.
    separator : bytes, optional
        A non-whitespace field separator (e.g. ``b"::"``) turned into a tab before parsing.
    expected : str
        What a field should be, for error messages ("integer ids and ratings").

    Raises
    ------
    DataError
        Empty file, or a field that is not a number (message names the file, line and field).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if separator:
        raw = raw.replace(separator, b"\t")
    buf = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    first_line = 0
    if skip_lines:
        if newlines.size < skip_lines:
            raise DataError(f"{path}: expected {skip_lines} header line(s) followed by data, "
                            f"found only {newlines.size + 1} line(s).")
        offset = int(newlines[skip_lines - 1]) + 1
        buf = buf[offset:]
        raw = raw[offset:]
        newlines = newlines[skip_lines:] - offset
        first_line = skip_lines
    whitespace = buf <= 32  # space, tab, CR, LF (and other control bytes)
    starts = ~whitespace
    starts[1:] &= whitespace[:-1]
    line_of_token = np.searchsorted(newlines, np.flatnonzero(starts))
    counts = np.bincount(line_of_token, minlength=newlines.size + 1)
    nonblank = np.flatnonzero(counts)
    if nonblank.size == 0:
        raise DataError(f"{path}: no data (the file is empty{' after its header' if skip_lines else ''}); "
                        f"expected {expected}.")
    is_int = np.dtype(dtype).kind in "iu"
    try:
        with warnings.catch_warnings():  # numpy < 2 warns and returns the numbers read so far
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(raw, dtype=dtype, sep=" ")
        ok = values.size == int(counts.sum())
    except ValueError:  # numpy >= 2: "could not be read to its end due to unmatched data"
        ok = False
    line_numbers = nonblank + 1 + first_line
    if not ok:
        text = raw.decode("utf-8", errors="replace")
        ln, token = _first_bad_token(text, nonblank + 1, is_int)
        if ln is None:
            raise DataError(f"{path}: could not be parsed as {expected}.")
        raise DataError(f"{path}: line {ln + first_line} has the field {token!r}, which is not "
                        f"{'an integer' if is_int else 'a number'}; expected {expected}.")
    if is_int and values.size and values.max() == _INT64_MAX:
        row = int(np.argmax(values == _INT64_MAX))
        ln = int(line_numbers[np.searchsorted(np.cumsum(counts[nonblank]), row, side="right")])
        raise DataError(f"{path}: line {ln} has a number too large for int64; expected {expected}.")
    return NumericText(path, values, counts[nonblank].astype(np.int64), line_numbers.astype(np.int64))


def read_table(path, columns, *, dtype=np.int64, skip_lines: int = 0,
               separator: bytes | None = None) -> np.ndarray:
    """A (rows, ncols) array from a file with exactly ncols numbers per line; ``columns`` is a
    tuple of column names or an int."""
    what = f"{columns} numbers" if isinstance(columns, int) else ", ".join(columns)
    text = read_numeric_text(path, dtype=dtype, skip_lines=skip_lines, separator=separator,
                             expected=f"lines of {what}")
    return text.table(columns)


def read_lines(path, encoding: str) -> list[str]:
    """All lines of a (metadata) text file, without line endings. Undecodable bytes become
    U+FFFD rather than failing: titles and names are metadata, not data."""
    path = Path(path)
    return _read_bytes(path).decode(encoding, errors="replace").splitlines()
