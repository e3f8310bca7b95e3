import numpy as np
import pandas as pd
import polars as pl
import pytest

from recfb.data import IdMap, Interactions, concatenate
from recfb.utils.errors import DataError


def small():
    return Interactions.from_arrays(["b", "a", "b", "c", "a"], [10, 20, 10, 30, 10],
                                    values=[1, 2, 3, 4, 5], timestamps=[5, 1, 2, 3, 9])


def test_id_maps_both_ways():
    x = small()
    assert x.user_ids.tolist() == ["a", "b", "c"] and x.item_ids.tolist() == [10, 20, 30]
    assert x.user_map.to_internal(["c", "a"]).tolist() == [2, 0]
    assert x.item_map.to_external([2, 0]).tolist() == [30, 10]
    with pytest.raises(KeyError, match="unknown user ids"):
        x.user_map.to_internal(["zz"])
    assert x.user_map.to_internal(["zz", "b"], missing="ignore").tolist() == [-1, 1]


@pytest.mark.parametrize("policy,expected", [("sum", 4.0), ("max", 3.0), ("last", 1.0)])
def test_duplicate_policies(policy, expected):
    # user b has item 10 twice: value 1 at t=5 (later), value 3 at t=2
    x = small()
    X = x.to_csr(policy)
    assert X.dtype == np.float32 and X.shape == (3, 3)
    assert X[1, 0] == expected
    assert X.nnz == 4 and X.has_sorted_indices


def test_last_without_timestamps_uses_row_order():
    x = Interactions.from_arrays([0, 0], [1, 1], values=[7, 2], duplicates="last")
    assert x.matrix[0, 0] == 2


def test_matrix_default_is_sum_and_cached():
    x = small()
    assert x.matrix is x.matrix and x.matrix[1, 0] == 4


def test_binarize_keeps_id_space():
    x = small().binarize(3)
    assert len(x) == 3 and set(x.values.tolist()) == {1.0} and x.shape == (3, 3)
    with pytest.raises(DataError, match="no interaction has a value >= 99"):
        small().binarize(99)


def test_k_core_iterates_to_fixed_point():
    # item 9 has 1 user; removing it leaves user 3 with 1 item, which must go too
    u = [0, 0, 1, 1, 2, 2, 3, 3]
    i = [1, 2, 1, 2, 1, 2, 1, 9]
    core = Interactions.from_arrays(u, i).k_core(2, 2)
    assert core.user_ids.tolist() == [0, 1, 2] and core.item_ids.tolist() == [1, 2]
    M = core.matrix.toarray()
    assert (M.sum(1) >= 2).all() and (M.sum(0) >= 2).all()


def test_sequences_by_time_and_row():
    x = small()
    seqs = x.sequences()
    assert [s.tolist() for s in seqs] == [[1, 0], [0, 0], [2]]
    assert [s.tolist() for s in x.sequences(by="row")] == [[1, 0], [0, 0], [2]]
    x2 = Interactions.from_arrays([0, 0, 0], [3, 1, 2])
    assert x2.sequences(by="row")[0].tolist() == [2, 0, 1]
    with pytest.raises(DataError, match="no timestamps"):
        x2.sequences()


def test_from_pandas_polars_csv_parquet_agree(tmp_path):
    df = pd.DataFrame({"u": [3, 1, 3], "i": ["x", "y", "y"], "r": [1.0, 2.0, 5.0], "t": [1, 2, 3]})
    a = Interactions.from_dataframe(df, "u", "i", "r", "t")
    b = Interactions.from_dataframe(pl.from_pandas(df), "u", "i", "r", "t")
    df.to_csv(tmp_path / "x.csv", index=False)
    c = Interactions.from_csv(tmp_path / "x.csv", columns=("user", "item", "value", "timestamp"))
    df.to_csv(tmp_path / "x.tsv", index=False, header=False, sep="\t")
    d = Interactions.from_csv(tmp_path / "x.tsv", columns=("user", "item", "value", "timestamp"))
    df.to_parquet(tmp_path / "x.parquet")
    e = Interactions.from_parquet(tmp_path / "x.parquet", "u", "i", "r", "t")
    for other in (b, c, d, e):
        assert (other.matrix != a.matrix).nnz == 0
        assert other.user_ids.tolist() == a.user_ids.tolist() and other.item_ids.tolist() == a.item_ids.tolist()
        assert other.timestamps.tolist() == [1, 2, 3]


def test_datetime_timestamps():
    df = pd.DataFrame({"user": [1, 1], "item": [2, 3], "ts": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    x = Interactions.from_dataframe(df, timestamp_col="ts")
    assert x.timestamps[1] - x.timestamps[0] == 86400


@pytest.mark.parametrize("kwargs,match", [
    (dict(users=[1, 2], items=[1]), "lengths must match"),
    (dict(users=[], items=[]), "no interactions"),
    (dict(users=[1, 2], items=[1, 2], values=[1, np.nan]), r"values contains nan at row 1"),
    (dict(users=[1, 2], items=[1, 2], values=[1, np.inf]), "finite"),
    (dict(users=[1, 2], items=[1, 2], values=[1, -3]), r"negative weight \(-3.0\) at row 1"),
    (dict(users=[1.5, 2], items=[1, 2]), r"non-integer id \(1.5\) at row 0"),
    (dict(users=[1, -2], items=[1, 2]), r"negative id \(-2\) at row 1"),
    (dict(users=[1, 2], items=[1, 2], timestamps=[1]), "timestamps has 1 rows"),
    (dict(users=[1, np.nan], items=[1, 2]), "non-finite id"),
])
def test_validation_errors_name_the_value(kwargs, match):
    with pytest.raises(DataError, match=match):
        Interactions.from_arrays(**kwargs)


def test_integral_float_ids_accepted():
    x = Interactions.from_arrays(np.array([1.0, 2.0]), [5, 6])
    assert x.user_ids.dtype == np.int64


def test_missing_columns_and_nulls():
    df = pd.DataFrame({"user": [1, None], "item": [1, 2]})
    with pytest.raises(DataError, match="missing values"):
        Interactions.from_dataframe(df)
    with pytest.raises(DataError, match="column 'itm' not in"):
        Interactions.from_dataframe(df, item_col="itm")


def test_truncated_csv_names_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("1\t2\t3\t4\n5\t6\n")
    with pytest.raises(DataError, match="line 2 has 2 fields"):
        Interactions.from_csv(p)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        Interactions.from_csv(tmp_path / "empty.csv")
    (tmp_path / "txt.tsv").write_text("1\t2\tfive\t4\n")
    with pytest.raises(DataError, match="not numeric"):
        Interactions.from_csv(tmp_path / "txt.tsv")


def test_shared_id_space_and_concatenate():
    x = small()
    y = Interactions.from_arrays(["c"], [20], user_ids=x.user_map, item_ids=x.item_map)
    assert y.shape == x.shape
    with pytest.raises(KeyError, match="unknown user ids"):
        Interactions.from_arrays(["q"], [20], user_ids=x.user_map, item_ids=x.item_map)
    z = concatenate([x.subset([0, 1]), x.subset([2, 3, 4])])
    assert (z.matrix != x.matrix).nnz == 0


def test_idmap_rejects_duplicates():
    with pytest.raises(DataError, match="twice"):
        IdMap([1, 2, 1])
