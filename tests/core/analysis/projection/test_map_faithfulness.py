"""Faithfulness of a map: trustworthiness and k-NN overlap on a seeded subsample."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.projection import knn_overlap, map_faithfulness, project, trustworthiness
from core.errors import LayerscopeError


def test_trustworthiness__pca_of_planar_data_is_faithful_noise_is_not(plane):
    X = plane()
    assert trustworthiness(X, project(X, "pca")) > 0.99
    noise = np.random.default_rng(3).normal(size=(300, 2))
    assert trustworthiness(X, noise) < 0.8


def test_trustworthiness__subsample_is_seeded_and_reported(plane):
    X = plane(n=400)
    Y = project(X, "pca") + np.random.default_rng(5).normal(scale=0.5, size=(400, 2))
    a = map_faithfulness(X, Y, max_points=150, seed=1)
    b = map_faithfulness(X, Y, max_points=150, seed=1)
    assert a == b and a.n_points == 150 and a.seed == 1
    assert map_faithfulness(X, Y, max_points=1000).n_points == 400


def test_knn_overlap__identity_is_one_noise_is_low(plane, rotation):
    X = plane()
    assert knn_overlap(X, X @ rotation(40, 6), k=5) == 1.0
    assert knn_overlap(X, np.random.default_rng(7).normal(size=(300, 2)), k=5) < 0.2


def test_knn_overlap__counts_shared_neighbours():
    # on a line, the 2 nearest neighbours of interior points are the two adjacent ones
    line = np.arange(12, dtype=float)[:, None]
    shuffled = line.copy()
    shuffled[[3, 8]] = shuffled[[8, 3]]  # two points swapped in the "map"
    value = knn_overlap(line, np.hstack([shuffled, np.zeros_like(shuffled)]), k=2)
    assert 0.5 < value < 1.0


def test_faithfulness__bad_input_names_the_problem(plane):
    X = plane(n=20)
    with pytest.raises(LayerscopeError, match="X has 20 inputs but the map Y has 19"):
        trustworthiness(X, X[:19, :2])
    with pytest.raises(LayerscopeError, match="n_neighbors=10 must be smaller than half"):
        trustworthiness(X, X[:, :2], n_neighbors=10)
