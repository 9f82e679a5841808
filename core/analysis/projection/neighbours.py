"""The inputs nearest to one input in a layer's full-dimensional space (not in its map)."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.analysis.arrays import as_matrix
from core.analysis.projection.maps import METRICS
from core.errors import LayerscopeError
from core.validation import check_choice, check_int

_BLOCK_ROWS = 16384  # rows read at a time: X may be a large memmap


def nearest_neighbors(X: Any, i: int, k: int = 10, *, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The k inputs nearest to input i in the full-dimensional space, self excluded.

    X (n, d); metric "cosine" (1 - cosine similarity; a zero vector is at distance 1)
    or "euclidean". Returns indices (k,) int64 and distances (k,) float64, nearest
    first, ties by index.
    """
    metric = check_choice("metric", metric, METRICS)
    X = as_matrix(X)
    n = len(X)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
        raise LayerscopeError(f"input {i!r} does not exist; the layer has {n} inputs (0 to {n - 1})")
    k = min(check_int("k", k, low=1), n - 1)
    query = np.asarray(X[i], dtype=np.float64)
    distances = np.empty(n)
    for start in range(0, n, _BLOCK_ROWS):
        block = np.asarray(X[start : start + _BLOCK_ROWS], dtype=np.float64)
        if metric == "cosine":
            norms = np.linalg.norm(block, axis=1) * np.linalg.norm(query)
            sims = np.divide(block @ query, norms, out=np.zeros(len(block)), where=norms > 0)
            distances[start : start + len(block)] = 1.0 - sims
        else:
            distances[start : start + len(block)] = np.linalg.norm(block - query, axis=1)
    if not np.isfinite(distances).all():
        raise LayerscopeError("X has NaN or infinite values; neighbours cannot be found")
    distances[i] = np.inf
    order = np.argsort(distances, kind="stable")[:k]
    return order.astype(np.int64), distances[order]
