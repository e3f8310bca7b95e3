"""Declarative parameter constraints (recfb.utils.params): one error type for every bad
parameter, interval bounds exact, and every model's table names real parameters that its
defaults satisfy."""
import itertools

import numpy as np
import pytest

import recfb.models as models
from recfb.denoise import PLD, RCE, TCE
from recfb.models import BPR, EASE, ItemKNN
from recfb.testing import checkerboard_holdout
from recfb.utils.errors import InvalidParameterError
from recfb.utils.params import Interval, Options, check_param


@pytest.mark.parametrize("low,high,closed", list(itertools.product([None, 0, 1], [None, 1, 3],
                                                                  ["both", "left", "right", "neither"])))
def test_interval_bounds_match_the_comparisons(low, high, closed):
    iv = Interval("real", low, high, closed)
    for v in (-1, 0, 0.5, 1, 2, 3, 4):
        lo_ok = low is None or (v >= low if closed in ("both", "left") else v > low)
        hi_ok = high is None or (v <= high if closed in ("both", "right") else v < high)
        assert iv.accepts(v) == (lo_ok and hi_ok), (v, iv)
    assert not iv.accepts(float("nan")) and not iv.accepts(True) and not iv.accepts("1")


def test_int_intervals_refuse_floats_and_bools():
    iv = Interval("int", 1, None)
    assert iv.accepts(3) and iv.accepts(np.int64(3))
    assert not iv.accepts(3.0) and not iv.accepts(True) and not iv.accepts(0)


def test_wrong_types_and_out_of_range_values_are_one_error_type():
    X, _ = checkerboard_holdout(8)
    errors = []
    for call in (lambda: BPR(factors=64.0, device="cpu").fit(X, show_progress=False),
                 lambda: BPR(factors=0, device="cpu").fit(X, show_progress=False),
                 lambda: PLD(pool_size=5.0), lambda: PLD(pool_size=0), lambda: TCE(drop_rate="0.1"),
                 lambda: RCE(beta=-1), lambda: EASE(dtype="float16").fit(X), lambda: ItemKNN(shrink="x").fit(X)):
        with pytest.raises(InvalidParameterError) as info:
            call()
        errors.append(info.value)
    assert all(isinstance(e, TypeError) and isinstance(e, ValueError) for e in errors)
    assert "factors == 64.0" in str(errors[0]) and "(got float)" in str(errors[0])
    assert "pool_size == 5.0" in str(errors[2])


def test_check_param_names_every_accepted_form():
    with pytest.raises(InvalidParameterError, match=r"k == 'x', must be one of 'a', 'b' or an int >= 1"):
        check_param("x", "k", Options({"a", "b"}), Interval("int", 1, None))
    assert check_param(None, "k", Interval("int", 1, None), None) is None


def test_every_models_constraints_name_its_parameters_and_accept_its_defaults():
    checked = 0
    for name in models.__all__:
        cls = getattr(models, name)
        table = getattr(cls, "_parameter_constraints", None)
        if not isinstance(cls, type) or not table:
            continue
        params = cls._param_names()
        assert set(table) <= set(params), f"{name}: constraints for unknown parameters {set(table) - set(params)}"
        cls()._validate_params()
        checked += 1
    assert checked >= 7  # MF, BPR, CML, LightGCN, EASE, ItemKNN, MostPopular at least
