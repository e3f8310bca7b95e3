"""Validation helpers, errors and small utilities shared by every recfb package."""
from recfb.utils.errors import (
    DataError,
    DatasetNotFoundError,
    FormatError,
    NotFittedError,
)
from recfb.utils.validation import (
    check_csr,
    check_is_fitted,
    check_positive_int,
    check_random_state,
    check_userids,
)

__all__ = [
    "DataError",
    "DatasetNotFoundError",
    "FormatError",
    "NotFittedError",
    "check_csr",
    "check_is_fitted",
    "check_positive_int",
    "check_random_state",
    "check_userids",
]
