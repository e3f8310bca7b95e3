"""Sequential-recommendation files (one user's actions in time order): SASRec Video, S3-Rec Beauty.

These files carry no timestamps; their line (or in-line) order *is* the time order, so rows
are kept in file order and ``Interactions.sequences(by="row")`` / ``leave_one_out(by="row")``
recover each user's sequence.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recfb.data import Interactions
from recfb.datasets._parse import read_numeric_text, read_table
from recfb.utils.errors import DataError

__all__ = ["load_s3rec_beauty", "load_sasrec_video", "read_user_item_lines", "read_user_sequences"]


def read_user_item_lines(path) -> Interactions:
    """A ``user item`` per line file (SASRec format) in file order; timestamps None."""
    table = read_table(path, ("user_id", "item_id"))
    return Interactions.from_arrays(table[:, 0], table[:, 1])


def read_user_sequences(path) -> Interactions:
    """A ``user item_1 item_2 ... item_n`` per line file (S3-Rec format), one row per item, in
    file order; timestamps None."""
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
    return Interactions.from_arrays(users, text.values[~is_user])


def load_sasrec_video(folder: Path) -> Interactions:
    """SASRec's ``Video.txt`` (Amazon Video Games): 287,107 actions in per-user time order."""
    return read_user_item_lines(Path(folder) / "Video.txt")


def load_s3rec_beauty(folder: Path) -> Interactions:
    """S3-Rec's ``Beauty.txt`` (Amazon Beauty, 5-core): one line per user, items in time order."""
    return read_user_sequences(Path(folder) / "Beauty.txt")
