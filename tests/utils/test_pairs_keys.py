"""recfb.utils.pairs against a brute-force set of (row, col) tuples."""
import numpy as np
import scipy.sparse as sp
import torch

from recfb.utils.pairs import contains, contains_torch, csr_keys, pair_keys


def test_membership_equals_a_python_set_of_pairs():
    rng = np.random.default_rng(0)
    X = sp.random(40, 30, density=0.1, format="csr", random_state=0)
    X.sort_indices()
    truth = set(zip(*X.nonzero()))
    rows = rng.integers(0, 40, size=(50, 1))
    cols = rng.integers(0, 30, size=(50, 7))
    keys = csr_keys(X)
    assert np.all(np.diff(keys) > 0)
    expected = np.array([[(int(r[0]), int(c)) in truth for c in cs] for r, cs in zip(rows, cols)])
    np.testing.assert_array_equal(contains(keys, pair_keys(rows, cols, 30)), expected)
    got_t = contains_torch(torch.as_tensor(keys), torch.as_tensor(pair_keys(rows, cols, 30)))
    np.testing.assert_array_equal(got_t.numpy(), expected)


def test_empty_key_sets_contain_nothing():
    assert not contains(np.zeros(0, np.int64), np.array([[0, 5]])).any()
    assert not contains_torch(torch.zeros(0, dtype=torch.int64), torch.tensor([3])).any()
