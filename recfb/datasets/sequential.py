"""Sequential-recommendation files (one user's actions in time order): SASRec Video, S3-Rec Beauty.

These files carry no clock times; their line (or in-line) order *is* the time order. The loaders
keep rows in file order and give each row its position in the file as its timestamp, so the
time-ordered tools work as written: ``leave_one_out(ds)``, ``ds.sequences()``, ``temporal``
(a "time" cut is then a cut in file position), and so does ``by="row"``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recfb.data import Interactions
from recfb.datasets._parse import read_numeric_text, read_table
from recfb.utils.errors import DataError

__all__ = ["load_s3rec_beauty", "load_sasrec_video", "read_user_item_lines", "read_user_sequences"]


def read_user_item_lines(path) -> Interactions:
    """A ``user item`` per line file (SASRec format) in file order; timestamps = row position."""
    table = read_table(path, ("user_id", "item_id"))
    return Interactions.from_arrays(table[:, 0], table[:, 1], timestamps=_file_order(len(table)))


def read_user_sequences(path) -> Interactions:
    """A ``user item_1 item_2 ... item_n`` per line file (S3-Rec format), one row per item, in
    file order; timestamps = row position."""
    text = read_numeric_text(path, expected="lines of 'user_id item_1 ... item_n' (integers)")
    short = text.counts < 2
    if short.any():
        row = int(np.argmax(short))
        raise DataError(f"{path}: line {int(text.line_numbers[row])} has a user id but no items; "
                        f"expected 'user_id item_1 ... item_n'. Is the file truncated?")
    starts = np.cumsum(text.counts) - text.counts
    is_user = np.zeros(text.values.size, dtype=bool)
    is_user[starts] = True
    users = np.repeat(text.values[starts], text.counts - 1)
    items = text.values[~is_user]
    return Interactions.from_arrays(users, items, timestamps=_file_order(items.size))


def _file_order(n: int) -> np.ndarray:
    """The position of each row in the file: these files' only clock."""
    return np.arange(n, dtype=np.int64)


def load_sasrec_video(folder: Path) -> Interactions:
    """SASRec's ``Video.txt`` (Amazon Video Games): 287,107 actions in per-user time order."""
    return read_user_item_lines(Path(folder) / "Video.txt")


def load_s3rec_beauty(folder: Path) -> Interactions:
    """S3-Rec's ``Beauty.txt`` (Amazon Beauty, 5-core): one line per user, items in time order."""
    return read_user_sequences(Path(folder) / "Beauty.txt")
