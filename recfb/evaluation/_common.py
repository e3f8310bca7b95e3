"""Validation and bookkeeping shared by the evaluation protocols."""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from recfb.utils.errors import DataError
from recfb.utils.validation import check_csr, check_positive_int, check_userids, rows_per_block

# One block of users x items float32 scores stays under this many bytes.


class MetricResults(dict):
    """Metric name -> mean over evaluated users, plus bookkeeping attributes.

    Attributes
    ----------
    n_users : int
        Users evaluated (those with at least one test item).
    n_skipped : int
        Users asked for (all rows, or ``users``) that had no test item and were skipped.
    per_user : dict or None
        With ``per_user=True``: ``"users"`` (evaluated user ids, int64) and one float64 array
        per metric, aligned with ``users``. ``None`` otherwise.
    """

    def __init__(self, values=(), *, n_users: int = 0, n_skipped: int = 0, per_user=None, **extra):
        super().__init__(values)
        self.n_users = n_users
        self.n_skipped = n_skipped
        self.per_user = per_user
        for key, value in extra.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v:.6g}" for k, v in self.items())
        return f"MetricResults({{{body}}}, n_users={self.n_users}, n_skipped={self.n_skipped})"


def check_matrices(train_X, test_X):
    """Both matrices as CSR float32 with sorted indices; duplicates of ``test_X`` summed so that
    every stored (user, item) is one distinct test item."""
    train = check_csr(train_X, "train_X")
    test = check_csr(test_X, "test_X")
    if train.shape != test.shape:
        raise DataError(f"train_X and test_X must have the same shape (users x items): "
                        f"{train.shape} != {test.shape}.")
    if not test.has_canonical_format:
        test = test.copy()
        test.sum_duplicates()
    return train, test


def check_ks(k) -> tuple:
    """``k`` (an int or a sequence of ints) as a sorted tuple of distinct ints >= 1."""
    if isinstance(k, (numbers.Integral, np.integer, str)):
        values = [k]
    else:
        try:
            values = list(k)
        except TypeError:
            raise TypeError(f"k must be an int or a sequence of ints, got {k!r} ({type(k).__name__}).") from None
    if not values:
        raise ValueError("k must be an int >= 1 or a non-empty sequence of them, got an empty sequence.")
    return tuple(sorted({check_positive_int(v, "k") for v in values}))


def select_users(test: sp.csr_matrix, users):
    """(users to evaluate: have test items, int64 sorted; number of asked users skipped)."""
    n_users = test.shape[0]
    n_test = np.diff(test.indptr)
    if users is None:
        asked = np.arange(n_users, dtype=np.int64)
    else:
        asked, _ = check_userids(users, n_users, name="users")
        asked = np.unique(asked)
    keep = asked[n_test[asked] > 0]
    return keep, int(asked.size - keep.size)


def check_batch_size(batch_size, n_items: int, bytes_per_cell: int = 4) -> int:
    if batch_size is None:
        return rows_per_block(bytes_per_cell * max(n_items, 1))
    return check_positive_int(batch_size, "batch_size")


def rows_of(X: sp.csr_matrix, users: np.ndarray, start: int, stop: int) -> sp.csr_matrix:
    """``X[users[start:stop]]``, by a cheap slice when those users are consecutive ids."""
    batch = users[start:stop]
    if batch.size and batch[-1] - batch[0] == batch.size - 1:
        return X[int(batch[0]):int(batch[-1]) + 1]
    return X[batch]


def progress(total: int, show: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not show, desc=desc, unit="user")
