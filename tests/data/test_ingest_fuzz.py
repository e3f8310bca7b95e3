"""Hypothesis fuzzing of ingestion (issue 15, part 7): whatever arrays or bytes come in,
from_arrays / from_csv either return Interactions whose matrix is canonical, or raise one of
recfb's own errors (DataError, FileNotFoundError) or a ValueError/TypeError recfb raises on
purpose; never another exception, never a crash."""
import gzip
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recfb.data import Interactions
from recfb.utils.errors import DataError

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ids = st.one_of(
    st.integers(min_value=-3, max_value=2**70), st.integers(0, 20), st.text(max_size=4), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([2.0, 2.7, "7", b"x", True]))


def check_result(x):
    X = x.matrix
    assert X.shape == (x.n_users, x.n_items)
    assert X.nnz == 0 or (X.indices.min() >= 0 and X.indices.max() < X.shape[1])
    assert np.all(X.data != 0) and np.all(np.isfinite(X.data))
    assert X.has_canonical_format


def allowed(exc: BaseException) -> bool:
    # DataError is a ValueError; recfb raises TypeError/ValueError on purpose for bad parameters
    return isinstance(exc, (DataError, ValueError, TypeError, FileNotFoundError)) and type(exc).__module__ in (
        "recfb.utils.errors", "builtins")


@FUZZ
@given(st.lists(st.tuples(ids, ids), min_size=0, max_size=30),
       st.one_of(st.none(), st.lists(st.one_of(st.floats(-1, 1e39), st.just(float("nan"))), min_size=30, max_size=30)))
def test_from_arrays_raises_only_recfb_errors(rows, values):
    users = np.array([r[0] for r in rows], dtype=object)
    items = np.array([r[1] for r in rows], dtype=object)
    vals = None if values is None else np.array(values[: len(rows)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = Interactions.from_arrays(users, items, vals)
    except Exception as exc:  # noqa: BLE001 - the point is which ones escape
        assert allowed(exc), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        return
    check_result(x)
    # every row survives with the same ids (no silent conversion): compare as strings
    kept = np.ones(len(rows), bool) if vals is None else vals != 0
    got = [str(v) for v in x.user_ids[x.users]]
    assert got == [str(int(u)) if isinstance(u, float) else str(u) for u in users[kept]]


lines = st.lists(st.tuples(st.one_of(st.integers(0, 50), st.text("ab,\"7 \t", max_size=4)),
                           st.integers(0, 50), st.floats(0, 10, allow_nan=False)), min_size=1, max_size=15)


@FUZZ
@given(lines, st.sampled_from([",", "\t"]), st.booleans(), st.integers(0, 400), st.booleans(), st.booleans())
def test_from_csv_of_written_rows_roundtrips_or_raises_recfb_errors(tmp_path_factory, rows, sep, with_header, cut,
                                                                   compress, bom):
    head = sep.join(["user", "item", "value"]) + "\n" if with_header else ""
    body = "".join(sep.join([str(u), str(i), repr(v)]) + "\n" for u, i, v in rows)
    raw = (("\ufeff" if bom else "") + head + body).encode("utf-8")
    if cut:
        raw = raw[: cut % (len(raw) + 1)]
    if compress:
        raw = gzip.compress(raw)
        if cut % 3 == 0:
            raw = raw[: len(raw) // 2]
    path = tmp_path_factory.mktemp("csv") / ("f.csv.gz" if compress else "f.csv")
    path.write_bytes(raw)
    read(path, sep)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["f.csv", "f.tsv", "f.dat", "f.csv.gz"]))
def test_from_csv_of_random_bytes_raises_only_recfb_errors(tmp_path_factory, raw, name):
    path = tmp_path_factory.mktemp("bin") / name
    path.write_bytes(raw)
    read(path, None, columns=("user", "item"))


def read(path, sep, columns=("user", "item", "value")):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = Interactions.from_csv(path, sep=sep, columns=columns)
    except Exception as exc:  # noqa: BLE001
        assert allowed(exc), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        return None
    check_result(x)
    return x


def test_fuzz_helpers_can_fail():
    with pytest.raises(AssertionError):
        assert allowed(KeyError("x"))
    assert not allowed(OverflowError("x")) and allowed(DataError("x"))
