"""Last.fm HetRec 2011 (``hetrec2011-lastfm-2k``): user-artist play counts."""
from __future__ import annotations

from pathlib import Path

from recfb.data import Interactions
from recfb.datasets._parse import read_lines, read_table
from recfb.utils.errors import DataError

__all__ = ["lastfm_2k_artist_names", "load_lastfm_2k"]


def load_lastfm_2k(folder: Path) -> Interactions:
    """``user_artists.dat`` (header ``userID artistID weight``, tab-separated): values are play
    counts; the original, non-contiguous user and artist ids are kept as external ids."""
    table = read_table(Path(folder) / "user_artists.dat", ("userID", "artistID", "weight"), skip_lines=1)
    return Interactions.from_arrays(table[:, 0], table[:, 1], table[:, 2])


def lastfm_2k_artist_names(folder: Path) -> dict:
    """External artist id -> name, from ``artists.dat`` (``id name url pictureURL``, UTF-8)."""
    path = Path(folder) / "artists.dat"
    names = {}
    for ln, line in enumerate(read_lines(path, "utf-8")[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip().isdigit():
            raise DataError(f"{path}: line {ln} is {line[:80]!r}; expected 'id<TAB>name<TAB>url<TAB>pictureURL'.")
        names[int(fields[0])] = fields[1]
    return names
