import numpy as np
import pytest
import scipy.sparse as sp

from recfb.utils import check_csr, check_positive_int, check_random_state, check_userids
from recfb.utils.errors import DataError


def test_check_csr_converts_with_warning():
    coo = sp.coo_matrix(np.eye(3, dtype=np.float64))
    with pytest.warns(UserWarning, match="converted from COO to CSR"):
        X = check_csr(coo)
    assert X.format == "csr" and X.dtype == np.float32


def test_check_csr_int_dtype_warns():
    with pytest.warns(UserWarning, match="int64 to float32"):
        check_csr(sp.csr_matrix(np.eye(2, dtype=np.int64)))


@pytest.mark.parametrize("value,match", [(np.nan, "non-finite"), (np.inf, "non-finite"), (-1.0, "negative weight")])
def test_check_csr_rejects_bad_weights(value, match):
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    X.data[1] = value
    with pytest.raises(DataError, match=match):
        check_csr(X)


def test_check_csr_shape_messages():
    X = sp.csr_matrix((2, 5), dtype=np.float32)
    with pytest.raises(DataError, match="transposed"):
        check_csr(X, n_items=2)
    with pytest.raises(DataError, match="empty"):
        check_csr(X, allow_empty=False)
    with pytest.raises(TypeError, match="scipy.sparse"):
        check_csr(np.zeros((2, 2)))


def test_scalars():
    with pytest.raises(ValueError, match="k == 0, must be >= 1"):
        check_positive_int(0, "k")
    with pytest.raises(TypeError, match="k must be an int"):
        check_positive_int(1.5, "k")
    with pytest.raises(ValueError, match="random_state == -1"):
        check_random_state(-1)
    a = check_random_state(3).random(4)
    assert np.array_equal(a, check_random_state(3).random(4))


def test_userids():
    ids, scalar = check_userids(5)
    assert scalar and ids.tolist() == [5]
    with pytest.raises(DataError, match="only 3 ids"):
        check_userids([0, 3], n_users=3)
    with pytest.raises(TypeError, match="integers"):
        check_userids(["a"])


def test_check_number_names_the_value_and_the_bound():
    from recfb.utils.validation import check_number
    assert check_number(0.5, "lr", strict=True) == 0.5 and check_number(0, "reg") == 0.0
    assert check_number(None, "lr", allow_none=True) is None
    for bad, kw in [(0.0, {"strict": True}), (-1e-9, {}), (float("nan"), {}), (float("inf"), {}), (True, {}),
                    ("0.1", {}), (None, {})]:
        with pytest.raises(ValueError, match="lr == "):
            check_number(bad, "lr", **kw)
