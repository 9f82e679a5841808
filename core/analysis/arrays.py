"""Checking the arrays the analyses are handed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from core.errors import LayerscopeError


def as_matrix(X: Any, name: str = "X") -> np.ndarray:
    """X (a tensor, array or memmap) as a 2-D numeric array, without copying an ndarray or memmap;
    raises naming `name` on another shape or a non-numeric dtype."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    array = np.asarray(X)
    if array.ndim != 2:
        raise LayerscopeError(f"{name} must be a 2-D array (rows, features); got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise LayerscopeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    return array


FLOAT16_HINT = "float16 overflow? extract in float32"


def non_finite_error(name: str, count: int, what: str, hint: str = FLOAT16_HINT) -> LayerscopeError:
    """The error for `count` NaN or inf values in `name`, which `what` cannot use."""
    return LayerscopeError(
        f"{name} has {count} non-finite values (NaN or inf); {what} need finite activations ({hint})"
    )


def as_float64(X: Any, name: str, what: str, hint: str = FLOAT16_HINT) -> np.ndarray:
    """X (n, d) as a float64 copy (-0.0 becomes 0.0); raises `non_finite_error` on NaN or inf."""
    out = np.array(as_matrix(X, name), dtype=np.float64)
    out += 0.0  # in place: -0.0 becomes 0.0
    if not math.isfinite(float(out.sum())):  # one pass; count only when something is off
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        if bad:
            raise non_finite_error(name, bad, what, hint)
    return out
