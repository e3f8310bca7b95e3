"""MovieLens 100K and 1M (GroupLens) loaders."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from recfb.data import Interactions
from recfb.datasets._parse import read_lines, read_table
from recfb.utils.errors import DataError

__all__ = ["IncompleteDatasetWarning", "load_ml_1m", "load_ml_100k", "ml_1m_item_names", "ml_100k_item_names"]

RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class IncompleteDatasetWarning(UserWarning):
    """The dataset was loaded from a reduced copy (e.g. ML-1M pairs without ratings or times)."""


def _from_rating_table(table: np.ndarray) -> Interactions:
    return Interactions.from_arrays(table[:, 0], table[:, 1], table[:, 2], table[:, 3])


def load_ml_100k(folder: Path) -> Interactions:
    """``u.data`` (``user \\t item \\t rating \\t timestamp``) in file order: ratings 1-5 as
    values, unix seconds as timestamps, external ids 1..943 / 1..1682."""
    return _from_rating_table(read_table(Path(folder) / "u.data", RATING_COLUMNS))


def _pairs_from_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"{path} needs pyarrow to read (pip install pyarrow), or put "
                          f"ratings_user_item_pairs.tsv.gz next to it.") from None
    try:
        table = pq.read_table(path, columns=["userID", "movieID"])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file with columns userID, movieID ({exc}).") from None
    out = []
    for name in ("userID", "movieID"):
        column = table.column(name)
        if column.null_count:
            row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise DataError(f"{path}: column {name!r} is empty at row {row}; expected integer ids.")
        try:
            out.append(pc.cast(column, "int64").to_numpy())
        except pa.ArrowInvalid:  # a value that is not an integer
            ok = pc.match_substring_regex(pc.cast(column, "string"), r"^\s*[+-]?\d+\s*$").to_numpy(zero_copy_only=False)
            row = int(np.argmin(ok))
            raise DataError(f"{path}: column {name!r} has {column[row].as_py()!r} at row {row}; "
                            f"expected integer ids.") from None
    return out[0], out[1]


def load_ml_1m(folder: Path) -> Interactions:
    """``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) when present.

    Otherwise the implicit pairs of ``ratings_user_item_pairs.tsv.gz`` or ``ratings.parquet``
    (read with pyarrow), with a :class:`IncompleteDatasetWarning`: those copies
    carry no ratings and no timestamps, so ``values`` and ``timestamps`` are None.
    """
    folder = Path(folder)
    ratings = folder / "ratings.dat"
    if ratings.is_file():
        return _from_rating_table(read_table(ratings, RATING_COLUMNS, separator=b"::"))
    tsv, parquet = folder / "ratings_user_item_pairs.tsv.gz", folder / "ratings.parquet"
    if tsv.is_file():  # same rows as the parquet file; needs no pyarrow and reads faster
        table = read_table(tsv, ("user_id", "item_id"))
        users, items, source = table[:, 0], table[:, 1], tsv
    elif parquet.is_file():
        users, items = _pairs_from_parquet(parquet)
        source = parquet
    else:
        raise DataError(f"{folder} holds none of ratings.dat, ratings_user_item_pairs.tsv.gz, ratings.parquet.")
    warnings.warn(f"ml-1m: {ratings} not found; loaded {users.size:,} implicit (user, movie) pairs from "
                  f"{source.name}, which has no ratings and no timestamps (values and timestamps are None). "
                  f"The full ratings.dat comes with https://files.grouplens.org/datasets/movielens/ml-1m.zip.",
                  IncompleteDatasetWarning, stacklevel=3)
    return Interactions.from_arrays(users, items)


def _names(path: Path, sep: str, encoding: str) -> dict:
    names = {}
    for ln, line in enumerate(read_lines(path, encoding), start=1):
        if not line.strip():
            continue
        fields = line.split(sep, 2)
        if len(fields) < 2 or not fields[0].strip().isdigit():
            raise DataError(f"{path}: line {ln} is {line[:80]!r}; expected 'id{sep}title{sep}...'.")
        names[int(fields[0])] = fields[1]
    return names


def ml_100k_item_names(folder: Path) -> dict:
    """External item id -> title, from ``u.item`` (latin-1, ``|``-separated)."""
    return _names(Path(folder) / "u.item", "|", "latin-1")


def ml_1m_item_names(folder: Path) -> dict:
    """External movie id -> title, from ``movies.dat`` (latin-1, ``::``-separated)."""
    return _names(Path(folder) / "movies.dat", "::", "latin-1")
