"""Which rows of a large layer to show or measure: a seeded, sorted subsample."""

from __future__ import annotations

import numpy as np

from core.validation import check_int


def subsample_indices(n: int, max_points: int = 50_000, seed: int = 0) -> np.ndarray:
    """Rows to show or measure: all of range(n) when n <= max_points, else `max_points`
    rows drawn without replacement by numpy.random.default_rng(seed), sorted. (k,) int64.
    """
    n = check_int("n", n, low=0)
    max_points = check_int("max_points", max_points, low=1)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False)).astype(np.int64)
