import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfb.data import Interactions, split
from recfb.utils.errors import DataError


def random_data(seed=0, n_users=40, n_items=30, n=600, timestamps=True):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    t = rng.integers(0, 10_000, n) if timestamps else None
    return Interactions.from_arrays(u, i, timestamps=t)


def rows(x):
    """Multiset of rows, as sorted tuples, to compare partitions."""
    t = x.timestamps if x.timestamps is not None else np.zeros(len(x), np.int64)
    return sorted(zip(x.users.tolist(), x.items.tolist(), t.tolist()))


def assert_partition(data, parts):
    """Parts are disjoint row sets whose union is the input, all in the input's id space."""
    for p in parts:
        assert p.user_map is data.user_map and p.item_map is data.item_map
    assert sum(len(p) for p in parts) == len(data)
    assert sorted(sum((rows(p) for p in parts), [])) == rows(data)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.05, 0.6))
def test_random_holdout_partition_and_per_user_fraction(seed, frac):
    data = random_data(seed)
    train, test = split.random_holdout(data, test_fraction=frac, seed=seed)
    assert_partition(data, [train, test])
    # every user keeps a train row; per-user test share is the rounded fraction
    n = np.bincount(data.users, minlength=data.n_users)
    nt = np.bincount(test.users, minlength=data.n_users)
    assert np.all(np.bincount(train.users, minlength=data.n_users)[n > 0] >= 1)
    expected = np.minimum(np.floor(frac * n + 0.5), np.maximum(n - 1, 0))
    assert np.array_equal(nt, expected)


def test_random_holdout_disjoint_when_no_duplicates_and_seeded():
    data = random_data(1).k_core(1)  # compact ids
    X = data.to_csr("max")
    uniq = Interactions.from_matrix(X)
    train, valid, test = split.random_holdout(uniq, 0.2, seed=3, validation_fraction=0.1)
    assert_partition(uniq, [train, valid, test])
    A, B, C = train.matrix, valid.matrix, test.matrix
    assert A.multiply(C).nnz == 0 and A.multiply(B).nnz == 0 and B.multiply(C).nnz == 0
    again = split.random_holdout(uniq, 0.2, seed=3, validation_fraction=0.1)
    assert rows(again[2]) == rows(test)
    other = split.random_holdout(uniq, 0.2, seed=4, validation_fraction=0.1)
    assert rows(other[2]) != rows(test)


def test_leave_one_out_takes_last_by_time():
    data = random_data(2)
    train, valid, test = split.leave_one_out(data)
    assert_partition(data, [train, valid, test])
    for u in range(data.n_users):
        tr = train.timestamps[train.users == u]
        va = valid.timestamps[valid.users == u]
        te = test.timestamps[test.users == u]
        n = tr.size + va.size + te.size
        if n >= 3:
            assert te.size == 1 and va.size == 1
            assert te[0] >= va[0] and (tr.size == 0 or va[0] >= tr.max())
        else:
            assert te.size == 0 and va.size == 0


def test_leave_one_out_by_row_and_missing_timestamps():
    data = Interactions.from_arrays([0, 0, 0, 1, 1], [5, 6, 7, 5, 6])
    with pytest.raises(DataError, match="needs timestamps"):
        split.leave_one_out(data)
    train, test = split.leave_one_out(data, by="row", validation=False)
    assert test.item_ids[test.items].tolist() == [7, 6]
    assert_partition(data, [train, test])


def test_temporal_cut():
    data = random_data(3)
    train, test = split.temporal(data, test_fraction=0.25)
    assert_partition(data, [train, test])
    assert train.timestamps.max() < test.timestamps.min()
    assert abs(len(test) / len(data) - 0.25) < 0.05
    with pytest.raises(DataError, match="needs timestamps"):
        split.temporal(random_data(3, timestamps=False))
    with pytest.raises(DataError, match="puts every row"):
        split.temporal(data, cut=-1)


def test_strong_generalization_holds_out_users():
    data = random_data(4)
    s = split.strong_generalization(data, test_users=0.2, validation_users=5, target_fraction=0.25, seed=0)
    assert_partition(data, [s.train, s.test_fold_in, s.test_target, s.valid_fold_in, s.valid_target])
    train_users = set(np.unique(s.train.users).tolist())
    assert not train_users & set(s.test_users.tolist())
    assert not train_users & set(s.valid_users.tolist())
    assert not set(s.test_users.tolist()) & set(s.valid_users.tolist())
    assert len(s.valid_users) == 5
    # each held-out user has both a fold-in and a target part
    assert set(np.unique(s.test_fold_in.users).tolist()) == set(np.unique(s.test_target.users).tolist())
    with pytest.raises(ValueError, match="target_fraction"):
        split.strong_generalization(data, target_fraction=1.5)


def test_fraction_validation():
    with pytest.raises(ValueError, match="test_fraction == 0"):
        split.random_holdout(random_data(), test_fraction=0)


@pytest.mark.parametrize("fn", ["random_holdout", "leave_one_out", "temporal", "strong_generalization"])
def test_a_bundle_or_other_object_is_refused_naming_it(fn):
    class Bundle:  # like CoatData / ModClothData: logs as attributes
        def __init__(self, log):
            self.train, self.test = log, log

    log = Interactions.from_arrays([0, 0, 1], [0, 1, 1])
    with pytest.raises(TypeError, match=rf"split\.{fn} takes an Interactions log, got Bundle; .*\(\.train, \.test\)"):
        getattr(split, fn)(Bundle(log))
    with pytest.raises(TypeError, match="got ndarray; build one with recfb.data.Interactions"):
        getattr(split, fn)(np.zeros((3, 2)))
