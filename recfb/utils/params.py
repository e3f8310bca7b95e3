"""Declarative parameter constraints, checked once (scikit-learn's ``_parameter_constraints``
idea): a class lists, per parameter, the values it accepts, and :func:`validate_params`
checks them all, raising :class:`~recfb.utils.errors.InvalidParameterError` naming the
parameter, the value and every accepted form.

    _parameter_constraints = {
        "factors": [Interval("int", 1, None)],
        "learning_rate": [Interval("real", 0, None, closed="neither"), None],
        "loss": [Options({"bpr", "bce"}), Instance(Objective)],
    }

A constraint is an :class:`Interval` (ints or finite reals; bools are neither), an
:class:`Options` set, an :class:`Instance` of types, ``None`` (the value None) or a callable
``value -> bool`` with a ``description`` attribute.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from recfb.utils.errors import InvalidParameterError


@dataclass(frozen=True)
class Interval:
    """Numbers in ``[low, high]`` (``closed``: "both", "left", "right", "neither"; None: unbounded).
    ``kind="int"``: integers only; ``"real"``: any finite real (ints included)."""
    kind: str
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def accepts(self, v) -> bool:
        if isinstance(v, (bool, np.bool_)):
            return False
        if self.kind == "int":
            if not isinstance(v, (numbers.Integral, np.integer)):
                return False
        elif not isinstance(v, (numbers.Real, np.floating, np.integer)) or not np.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (v == self.low and self.closed in ("right", "neither"))):
            return False
        return not (self.high is not None
                    and (v > self.high or (v == self.high and self.closed in ("left", "neither"))))

    def __str__(self) -> str:
        what = "an int" if self.kind == "int" else "a finite number"
        lo = "" if self.low is None else ("[" if self.closed in ("both", "left") else "(") + f"{self.low:g}"
        hi = "" if self.high is None else f"{self.high:g}" + ("]" if self.closed in ("both", "right") else ")")
        if self.low is not None and self.high is not None:
            return f"in {lo}, {hi}" if self.kind == "real" else f"{what} in {lo}, {hi}"
        if self.low is not None:
            return f"{what} {'>=' if lo.startswith('[') else '>'} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<=' if hi.endswith(']') else '<'} {self.high:g}"
        return what


@dataclass(frozen=True)
class Options:
    """One of a set of values (strings, usually)."""
    values: frozenset

    def __init__(self, values):
        object.__setattr__(self, "values", frozenset(values))

    def accepts(self, v) -> bool:
        try:
            return v in self.values and not isinstance(v, (bool, np.bool_))
        except TypeError:  # unhashable
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in sorted(self.values, key=str))


@dataclass(frozen=True)
class Instance:
    """An instance of one of ``types``."""
    types: tuple

    def __init__(self, *types):
        object.__setattr__(self, "types", tuple(types))

    def accepts(self, v) -> bool:
        return isinstance(v, self.types)

    def __str__(self) -> str:
        return "an instance of " + " or ".join(t.__name__ for t in self.types)


def _accepts(c, v) -> bool:
    if c is None:
        return v is None
    if hasattr(c, "accepts"):
        return c.accepts(v)
    return bool(c(v))


def _describe(c) -> str:
    if c is None:
        return "None"
    return str(c) if hasattr(c, "accepts") else getattr(c, "description", getattr(c, "__name__", repr(c)))


def validate_params(owner: str, params: dict, constraints: dict) -> None:
    """Check every parameter in ``constraints`` (names absent from ``params`` are skipped);
    InvalidParameterError for the first that no constraint accepts."""
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if not any(_accepts(c, value) for c in allowed):
            accepted = " or ".join(_describe(c) for c in allowed)
            raise InvalidParameterError(f"{owner}: {name} == {value!r}, must be {accepted} "
                                        f"(got {type(value).__name__}).")


def check_param(value, name: str, *allowed, owner: str = ""):
    """One parameter against ``allowed`` constraints; returns the value."""
    validate_params(owner or name, {name: value}, {name: list(allowed)})
    return value
