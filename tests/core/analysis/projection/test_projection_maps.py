"""One-layer maps: PCA, t-SNE, and the input they refuse."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.projection import aligned_projection, project
from core.errors import LayerscopeError


def test_project__pca_cosine_ignores_row_length(plane):
    X = plane(n=100) + 10.0
    scaled = X * np.random.default_rng(9).uniform(0.5, 5, size=(100, 1))  # each row rescaled
    np.testing.assert_allclose(project(X, "pca", metric="cosine"), project(scaled, "pca", metric="cosine"), atol=1e-4)


def test_project__tsne_gives_float32_map(plane):
    X = plane(n=60)
    Y = project(X, "tsne", seed=0)
    assert Y.shape == (60, 2) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y, project(X, "tsne", seed=0))


def test_project__bad_input():
    with pytest.raises(LayerscopeError, match="NaN or infinite values in 1 inputs"):
        project(np.array([[1.0, np.nan], [0, 1], [1, 1]]))
    with pytest.raises(LayerscopeError, match="method='isomap'"):
        project(np.eye(5), "isomap")
    with pytest.raises(LayerscopeError, match="metric='manhattan'"):
        project(np.eye(5), "pca", metric="manhattan")
    with pytest.raises(LayerscopeError, match="n_components=3 must be at most"):
        project(np.ones((10, 2)), "pca", n_components=3)
    with pytest.raises(LayerscopeError, match="row counts \\[5, 6\\]"):
        aligned_projection([np.eye(5), np.eye(6)], "pca")
    with pytest.raises(LayerscopeError, match="method='tsne'"):
        aligned_projection([np.eye(5)], "tsne")
