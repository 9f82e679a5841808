"""Nearest inputs in the full-dimensional space, and the subsample of rows to show."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.projection import nearest_neighbors, subsample_indices
from core.errors import LayerscopeError


def test_nearest_neighbors__excludes_self_and_sorts():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    idx, dist = nearest_neighbors(X, 0, k=2)
    assert idx.tolist() == [1, 2] and dist[0] < dist[1]
    with pytest.raises(LayerscopeError, match="input 9 does not exist"):
        nearest_neighbors(X, 9)


def test_nearest_neighbors__matches_brute_force_in_full_space():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(200, 30))
    idx, dist = nearest_neighbors(X, 17, k=5, metric="cosine")
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = 1 - unit @ unit[17]
    cos[17] = np.inf
    np.testing.assert_array_equal(idx, np.argsort(cos)[:5])
    np.testing.assert_allclose(dist, np.sort(cos)[:5], rtol=1e-10)
    idx_e, _ = nearest_neighbors(X, 17, k=5, metric="euclidean")
    euclid = np.linalg.norm(X - X[17], axis=1)
    euclid[17] = np.inf
    np.testing.assert_array_equal(idx_e, np.argsort(euclid)[:5])


def test_subsample_indices__deterministic_sorted_and_capped():
    a = subsample_indices(100_000, 50_000, seed=0)
    assert len(a) == 50_000 and len(np.unique(a)) == 50_000 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, subsample_indices(100_000, 50_000, seed=0))
    assert not np.array_equal(a, subsample_indices(100_000, 50_000, seed=1))
    assert np.array_equal(subsample_indices(10, 50_000), np.arange(10))
