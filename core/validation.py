"""Parameter checks with one wording for every message.

Each check returns the value in its canonical type or raises `LayerscopeError`
(a `ValueError`) naming the parameter, repeating the bad value and saying what is
allowed, in the scikit-learn habit::

    check_int("k", 0, low=1)                 # k=0 must be an integer >= 1
    check_number("alpha", -1, low=0, low_open=True)  # alpha=-1 must be a number > 0
    check_choice("metric", "foo", ("a", "b"))        # metric='foo' must be one of: a, b
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from core.errors import LayerscopeError


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = f"{'>' if low_open else '>='} {low}"
    hi = f"{'<' if high_open else '<='} {high}"
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"between {low} and {high}"
        return f"{lo} and {hi}"
    if low is not None:
        return lo
    if high is not None:
        return hi
    return ""


def _within(value: float, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    if high is not None and (value >= high if high_open else value > high):
        return False
    return True


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int; a bool, a non-integer or a value outside [low, high] is refused."""
    bounds = _bounds(low, high, False, False)
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        ok = True  # 3.0 from a JSON sidecar or a number widget is the integer 3
    if not ok or not _within(int(value), low, high, False, False):
        raise LayerscopeError(f"{name}={value!r} must be an integer" + (f" {bounds}" if bounds else ""))
    return int(value)


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a finite float within the bounds (`*_open`: the bound itself is excluded)."""
    bounds = _bounds(low, high, low_open, high_open)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or not _within(float(value), low, high, low_open, high_open):
        raise LayerscopeError(f"{name}={value!r} must be a finite number" + (f" {bounds}" if bounds else ""))
    return float(value)


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed` (names compared exactly)."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise LayerscopeError(f"{name}={value!r} must be one of: {', '.join(allowed)}")
    return value
