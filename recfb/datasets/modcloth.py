"""ModCloth ratings as split by DeCA (Wang et al., WWW 2022) for denoising implicit feedback."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recfb.data import IdMap, Interactions
from recfb.datasets._parse import read_table

__all__ = ["FILES", "ModClothData", "load_modcloth_deca"]

FILES = {
    "train": "modcloth.train.rating",
    "valid": "modcloth.valid.rating",
    "test_noisy": "modcloth.test.noisy",
    "test_clean": "modcloth.test.negative",
}


@dataclass
class ModClothData:
    """DeCA's ModCloth split; every row is a positive, its 1-5 rating tells clean from noisy.

    All four parts share one id space (external ids = DeCA's 0-based ids), so their
    matrices have the same shape. Values are the ratings.

    Attributes
    ----------
    train : Interactions
        79,914 rows, noisy positives included (low ratings).
    valid : Interactions
        9,990 rows.
    test_noisy : Interactions
        9,989 rows: every test positive.
    test_clean : Interactions
        5,433 rows: the rating-5 subset of ``test_noisy`` (DeCA's ``modcloth.test.negative``).
    """

    train: Interactions
    valid: Interactions
    test_noisy: Interactions
    test_clean: Interactions

    def __repr__(self) -> str:
        return (f"ModClothData(train={len(self.train):,}, valid={len(self.valid):,}, "
                f"test_noisy={len(self.test_noisy):,}, test_clean={len(self.test_clean):,}; "
                f"{self.train.n_users:,} users x {self.train.n_items:,} items)")


def load_modcloth_deca(folder: Path) -> ModClothData:
    """Read the four ``user \\t item \\t rating`` files (CRLF) into one shared id space."""
    folder = Path(folder)
    tables = {part: read_table(folder / name, ("user", "item", "rating")) for part, name in FILES.items()}
    lengths = np.cumsum([len(t) for t in tables.values()])[:-1]
    stacked = np.concatenate(list(tables.values()))
    user_map, users = IdMap.from_values(stacked[:, 0], "user ids")
    item_map, items = IdMap.from_values(stacked[:, 1], "item ids")
    parts = {}
    for (part, table), u, i in zip(tables.items(), np.split(users, lengths), np.split(items, lengths)):
        parts[part] = Interactions(u, i, table[:, 2], user_map=user_map, item_map=item_map, validate=False)
    return ModClothData(**parts)
