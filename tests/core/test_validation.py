"""One wording for every parameter check: the name, the bad value, what is allowed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import LayerscopeError
from core.validation import check_choice, check_int, check_number


def test_check_int__accepts_integers_and_integral_floats():
    assert check_int("k", 3, low=1) == 3
    assert check_int("k", np.int64(4), low=1) == 4
    assert check_int("k", 5.0, low=1, high=5) == 5


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "3", None, math.nan])
def test_check_int__refuses_with_name_value_and_range(value):
    with pytest.raises(LayerscopeError, match=r"^k=.* must be an integer >= 1$"):
        check_int("k", value, low=1)


def test_check_int__names_both_bounds():
    with pytest.raises(LayerscopeError, match=r"n_folds=11 must be an integer between 2 and 10"):
        check_int("n_folds", 11, low=2, high=10)


def test_check_number__open_and_closed_bounds():
    assert check_number("alpha", 0.0, low=0) == 0.0
    with pytest.raises(LayerscopeError, match=r"alpha=0.0 must be a finite number > 0$"):
        check_number("alpha", 0.0, low=0, low_open=True)
    with pytest.raises(LayerscopeError, match=r"q=1.5 must be a finite number between 0 and 1"):
        check_number("q", 1.5, low=0, high=1)
    with pytest.raises(LayerscopeError, match=r"x=inf must be a finite number$"):
        check_number("x", math.inf)
    with pytest.raises(LayerscopeError, match=r"x=False must be a finite number"):
        check_number("x", False)


def test_check_choice__lists_what_is_allowed():
    assert check_choice("metric", "cka", ("cka", "rsa")) == "cka"
    with pytest.raises(LayerscopeError, match=r"metric='foo' must be one of: cka, rsa"):
        check_choice("metric", "foo", ("cka", "rsa"))
    with pytest.raises(LayerscopeError, match=r"metric=3 must be one of"):
        check_choice("metric", 3, ("cka",))
