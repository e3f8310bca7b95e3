"""Coat (Schnabel et al., ICML 2016): MNAR training ratings and a MAR (uniformly random) test."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recfb.data import IdMap, Interactions
from recfb.datasets._parse import read_lines, read_numeric_text
from recfb.utils.errors import DataError

__all__ = ["N_ITEMS", "N_USERS", "CoatData", "load_coat"]

N_USERS, N_ITEMS = 290, 300
N_USER_FEATURES, N_ITEM_FEATURES = 14, 33


@dataclass
class CoatData:
    """The Coat shopping dataset: 290 users x 300 coats, ratings 1-5.

    Attributes
    ----------
    train : Interactions
        6,960 self-selected (missing-not-at-random) ratings, 24 per user; values = ratings.
    test : Interactions
        4,640 ratings of uniformly random items (missing-at-random), 16 per user. Same id
        space as ``train`` (external ids 0..289 / 0..299 = the matrix indices), so
        ``train.matrix`` and ``test.matrix`` are both 290 x 300.
    user_features : ndarray of shape (290, 14), float32
        One-hot gender, age, location, fashion interest; names in ``user_feature_names``.
    item_features : ndarray of shape (300, 33), float32
        One-hot gender, jacket type, colour, on-front-page; names in ``item_feature_names``.
    propensities : ndarray of shape (290, 300), float32
        The authors' learned propensities of a rating being observed in ``train``.
    """

    train: Interactions
    test: Interactions
    user_features: np.ndarray
    item_features: np.ndarray
    propensities: np.ndarray
    user_feature_names: list = field(default_factory=list)
    item_feature_names: list = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"CoatData(train={len(self.train):,} MNAR ratings, test={len(self.test):,} MAR ratings, "
                f"{self.train.n_users} users x {self.train.n_items} items, "
                f"user_features {self.user_features.shape}, item_features {self.item_features.shape})")


def _matrix(path: Path, shape: tuple[int, int], what: str, dtype=np.int64, valid=None) -> np.ndarray:
    """A dense matrix file; ``valid(table) -> bool mask`` flags bad entries (reported by line)."""
    text = read_numeric_text(path, dtype=dtype, expected=f"a {shape[0]} x {shape[1]} matrix of {what}")
    table = text.table(shape[1])
    if table.shape[0] != shape[0]:
        raise DataError(f"{path}: {table.shape[0]} rows, expected {shape[0]} (a {shape[0]} x {shape[1]} "
                        f"matrix of {what}); is the file truncated?")
    if valid is not None:
        ok = valid(table)
        if not ok.all():
            r, c = (int(x[0]) for x in np.nonzero(~ok))
            raise DataError(f"{path}: line {int(text.line_numbers[r])}, column {c + 1} holds {table[r, c]}; "
                            f"expected {what}.")
    return table


def _ratings(path: Path, user_map: IdMap, item_map: IdMap) -> Interactions:
    dense = _matrix(path, (N_USERS, N_ITEMS), "ratings 0-5 (0 = unobserved)", valid=lambda m: (m >= 0) & (m <= 5))
    users, items = np.nonzero(dense)  # row-major: by user, then item
    return Interactions(users, items, dense[users, items], user_map=user_map, item_map=item_map, validate=False)


def _feature_names(path: Path, n: int) -> list:
    if not path.is_file():
        return []
    names = [ln.strip() for ln in read_lines(path, "utf-8") if ln.strip()]
    if len(names) != n:
        raise DataError(f"{path}: {len(names)} feature names, expected {n} (one per feature column).")
    return names


def _binary(m: np.ndarray) -> np.ndarray:
    return (m == 0) | (m == 1)


def load_coat(folder: Path) -> CoatData:
    """Read ``train.ascii``, ``test.ascii``, ``propensities.ascii`` and the feature matrices."""
    folder = Path(folder)
    user_map = IdMap(np.arange(N_USERS), "user ids")
    item_map = IdMap(np.arange(N_ITEMS), "item ids")
    features = folder / "user_item_features"
    propensities = _matrix(folder / "propensities.ascii", (N_USERS, N_ITEMS), "propensities in (0, 1]",
                           np.float64, valid=lambda m: (m > 0) & (m <= 1))
    user_features = _matrix(features / "user_features.ascii", (N_USERS, N_USER_FEATURES), "0/1 features",
                            valid=_binary)
    item_features = _matrix(features / "item_features.ascii", (N_ITEMS, N_ITEM_FEATURES), "0/1 features",
                            valid=_binary)
    return CoatData(
        train=_ratings(folder / "train.ascii", user_map, item_map),
        test=_ratings(folder / "test.ascii", user_map, item_map),
        user_features=user_features.astype(np.float32),
        item_features=item_features.astype(np.float32),
        propensities=propensities.astype(np.float32),
        user_feature_names=_feature_names(features / "user_features_map.txt", N_USER_FEATURES),
        item_feature_names=_feature_names(features / "item_features_map.txt", N_ITEM_FEATURES),
    )
