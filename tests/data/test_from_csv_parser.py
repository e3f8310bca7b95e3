"""Interactions.from_csv (pyarrow.csv) and from_arrays: no silent loss (issue 15, parts 2-3)."""
import gzip
import warnings

import numpy as np
import pytest

from recfb.data import Interactions
from recfb.utils.errors import DataError

COLS2 = ("user", "item")


def read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interactions.from_csv(path, **kw)


def pairs(x):
    """The (external user, external item) pairs of x, in row order."""
    return list(zip(x.user_ids[x.users].tolist(), x.item_ids[x.items].tolist()))


# ---------------------------------------------------------------------- from_csv
def test_headerless_file_whose_first_field_is_a_string_keeps_its_first_row(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("alice,7\nbob,8\ncarol,7\n")
    with pytest.warns(UserWarning, match="as data"):
        x = Interactions.from_csv(p, columns=COLS2)
    assert pairs(x) == [("alice", 7), ("bob", 8), ("carol", 7)]


def test_header_is_detected_and_said(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("user,item,value\n1,2,3\n4,5,6\n")
    with pytest.warns(UserWarning, match="as a header"):
        x = Interactions.from_csv(p, columns=("user", "item", "value"))
    assert pairs(x) == [(1, 2), (4, 5)] and x.values.tolist() == [3, 6]
    q = tmp_path / "h2.csv"  # header names that are no role: detected by text above numbers
    q.write_text("uid,iid\n1,2\n4,5\n")
    with pytest.warns(UserWarning, match="as a header"):
        assert pairs(Interactions.from_csv(q, columns=COLS2)) == [(1, 2), (4, 5)]


def test_explicit_header_choice(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("a,b\nc,d\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit choice does not warn about detection
        x = Interactions.from_csv(p, columns=COLS2, header=False)
    assert pairs(x) == [("a", "b"), ("c", "d")]
    with pytest.warns(UserWarning, match="read by position"):
        assert pairs(Interactions.from_csv(p, columns=COLS2, header=True)) == [("c", "d")]
    with pytest.raises(ValueError, match="header == 'yes'"):
        Interactions.from_csv(p, columns=COLS2, header="yes")


def test_swapped_header_is_an_error_naming_both(tmp_path):
    p = tmp_path / "sw.csv"
    p.write_text("item,user\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"header names column 1 'item' but columns= puts 'user'.*swapped"):
        Interactions.from_csv(p, columns=COLS2, header=True)
    with pytest.raises(DataError, match="swapped"):
        read(p, columns=COLS2)


def test_bom_and_quoted_fields_lose_nothing(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffuser,item\n\"smith, j\",1\n\"o\"\"brien\",2\r\nplain,3\n".encode("utf-8"))
    x = read(p, columns=COLS2)
    assert pairs(x) == [("smith, j", 1), ('o"brien', 2), ("plain", 3)]
    q = tmp_path / "bom2.csv"  # BOM on a header-less file: the first id must not carry it
    q.write_bytes("\ufeff10,1\n11,2\n".encode("utf-8"))
    assert pairs(read(q, columns=COLS2)) == [(10, 1), (11, 2)]


def test_undecodable_bytes_name_the_line_and_offset(tmp_path):
    p = tmp_path / "enc.csv"
    p.write_bytes(b"u1,1\nu2,2\nJos\xe9,3\n")
    with pytest.raises(DataError, match=r"line 3 \(byte offset 13\).*not valid utf-8"):
        read(p, columns=COLS2)
    x = read(p, columns=COLS2, encoding="latin-1")
    assert "José" in x.user_ids.tolist() and len(x) == 3


def test_distinct_ids_do_not_merge(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("007,1\n7,1\n")
    assert sorted(read(p, columns=COLS2, header=False).user_ids.tolist()) == ["007", "7"]


def test_last_line_cut_inside_a_field_names_the_line(tmp_path):
    p = tmp_path / "cut.tsv"
    p.write_text("1\t2\t5\t978300760\n1\t3\t4\t978300761\n2\t2\t3\t97830")
    with pytest.raises(DataError, match=r"last line \(3\).*looks cut"):
        read(p)
    q = tmp_path / "cut2.tsv"
    q.write_text("1\t2\t5\t978300760\n1\t3\t4\t978300761\n2\t2")
    with pytest.raises(DataError, match="line 3 has 2 fields, expected 4"):
        read(q)
    ok = tmp_path / "ok.tsv"  # a complete last line without a newline is fine
    ok.write_text("1\t2\t5\t978300760\n1\t3\t4\t978300761")
    assert read(ok).timestamps.tolist() == [978300760, 978300761]


def test_malformed_line_is_named_counting_blank_lines(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("1,2\n\n3,4\n5\n6,7\n")
    with pytest.raises(DataError, match="line 4 has 1 fields, expected 2"):
        read(p, columns=COLS2)
    q = tmp_path / "q.csv"
    q.write_text('1,2\n"3,4\n')
    with pytest.raises(DataError, match="q.csv"):
        read(q, columns=COLS2)
    v = tmp_path / "v.csv"
    v.write_text("1,2,3\n\n4,5,x\n")
    with pytest.raises(DataError, match=r"line 3: column 'value' is not numeric \('x'\)"):
        read(v, columns=("user", "item", "value"))


def test_gzip_errors_name_the_file(tmp_path):
    good = gzip.compress(b"1,2\n3,4\n" * 50)
    p = tmp_path / "t.csv.gz"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="t.csv.gz is not a readable gzip file"):
        read(p, columns=COLS2)
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="t.csv.gz is not a readable gzip file"):
        read(p, columns=COLS2)
    p.write_bytes(good)
    assert len(read(p, columns=COLS2)) == 100


def test_double_colon_and_whitespace_separators(tmp_path):
    p = tmp_path / "ratings.dat"
    p.write_text("1::10::5::978300760\n2::20::3::978300761\n")
    x = read(p, sep="::")
    assert pairs(x) == [(1, 10), (2, 20)] and x.timestamps.tolist() == [978300760, 978300761]
    q = tmp_path / "u.data"
    q.write_text("1  10 5\t100\n  2\t20 3 101  \n")
    assert pairs(read(q)) == [(1, 10), (2, 20)]


# ---------------------------------------------------------------------- from_arrays
@pytest.mark.parametrize("bad,match", [
    (None, r"None \(NoneType\) at row 1500"),
    (2.7, r"non-integer id \(2.7\) at row 1500"),
    ("7", r"mixes strings and numbers: 0 at row 0 but '7' at row 1500"),
    (True, r"True \(bool\) at row 1500"),
])
def test_object_ids_are_checked_in_every_row(bad, match):
    users = np.array(list(range(2000)), dtype=object)
    users[1500] = bad
    with pytest.raises(DataError, match=match):
        Interactions.from_arrays(users, np.zeros(2000, np.int64))


def test_huge_ids_are_not_called_negative():
    for users in (np.array([1, 2**63], dtype=np.uint64), np.array([1, 10**30], dtype=object), [1, 2**64 + 5]):
        with pytest.raises(DataError, match=r">= 2\*\*63") as info:
            Interactions.from_arrays(users, [1, 2])
        assert "negative" not in str(info.value)
    with pytest.raises(DataError, match="outside the int64 range"):
        Interactions.from_arrays(np.array([1.0, 1e19]), [1, 2])
    with pytest.raises(DataError, match="negative"):
        Interactions.from_arrays(np.array([1, -5], dtype=object), [1, 2])


def test_mixed_int_and_integral_float_objects_are_ints():
    x = Interactions.from_arrays(np.array([3, 4.0, np.int32(5)], dtype=object), [1, 2, 3])
    assert x.user_ids.tolist() == [3, 4, 5] and x.user_ids.dtype == np.int64


def test_nat_timestamps_are_an_error():
    ts = np.array(["2020-01-01", "NaT", "2020-01-03"], dtype="datetime64[s]")
    with pytest.raises(DataError, match="NaT .* at row 1"):
        Interactions.from_arrays([1, 2, 3], [1, 2, 3], timestamps=ts)


def test_value_zero_rows_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="dropped 2 of 4 rows with value 0"):
        x = Interactions.from_arrays([1, 1, 2, 3], [1, 2, 2, 3], values=[1.0, 0.0, 2.0, 0.0],
                                     timestamps=[10, 11, 12, 13])
    assert pairs(x) == [(1, 1), (2, 2)] and x.timestamps.tolist() == [10, 12]
    X = x.matrix
    assert X.nnz == 2 and np.all(X.data != 0)
    with pytest.raises(DataError, match="all 2 rows have value 0"):
        Interactions.from_arrays([1, 2], [1, 2], values=[0, 0])
