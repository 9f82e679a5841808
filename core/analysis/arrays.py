"""Checking the arrays the analyses are handed."""

from __future__ import annotations

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
