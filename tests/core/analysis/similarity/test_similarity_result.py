"""Summaries of a similarity matrix: best matches, best pair, the relative-depth diagonal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.analysis.similarity import (
    best_match_per_layer,
    best_pair,
    diagonal_on_relative_depth,
    similarity_matrix,
)


def test_best_match_best_pair_and_relative_depth_diagonal():
    matrix = np.array([[0.9, 0.2, np.nan], [0.1, 0.8, 0.3], [np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(best_match_per_layer(matrix), [0, 1, -1])
    np.testing.assert_array_equal(best_match_per_layer(matrix, higher_is_better=False), [1, 0, -1])
    assert best_pair(matrix) == (0, 0, 0.9)
    assert best_pair(np.full((2, 2), np.nan)) is None
    assert diagonal_on_relative_depth(np.array([[1.0, 0.0], [0.0, 0.5]])) == pytest.approx(0.75)
    # A has 3 layers, B 5: depth t reads (2t, 4t); values linear in the B index make the answer exact
    wide = np.tile(np.arange(5.0), (3, 1))
    assert diagonal_on_relative_depth(wide) == pytest.approx(np.mean(4 * np.linspace(0, 1, 5)))
    assert diagonal_on_relative_depth(wide.T) == pytest.approx(np.mean(4 * np.linspace(0, 1, 5)))
    assert math.isnan(diagonal_on_relative_depth(np.full((2, 3), np.nan)))


def test_similarity_result__distance_metrics_match_by_minimum(rng, toy_layers):
    A = toy_layers(rng)
    result = similarity_matrix(A, A, "orthogonal_procrustes_distance")
    assert not result.higher_is_better
    assert result.best_match() == tuple(A)  # each layer is closest to itself (distance 0)
    assert result.best_pair()[2] == pytest.approx(0.0, abs=1e-10)
    assert len(result.to_frame()) == 9
