"""UMAP maps (numba compilation: about a minute on a fresh 2-core process)."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.projection import aligned_projection, knn_overlap, project, warm_up_umap


@pytest.mark.slow
def test_warm_up_umap__returns_seconds():
    assert warm_up_umap() > 0


@pytest.mark.slow
def test_project__umap_is_seeded_and_keeps_clusters():
    rng = np.random.default_rng(11)
    centres = rng.normal(scale=10, size=(3, 20))
    X = np.vstack([c + rng.normal(size=(50, 20)) for c in centres])
    Y = project(X, "umap", seed=0)
    assert Y.shape == (150, 2) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y, project(X, "umap", seed=0))
    assert knn_overlap(X, Y, k=10) > 0.3


@pytest.mark.slow
def test_aligned_umap__maps_every_layer_and_keeps_inputs_in_place():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(150, 10))
    maps = aligned_projection([base, base + 0.01 * rng.normal(size=base.shape)], "umap")
    assert len(maps) == 2 and maps[0].shape == (150, 2)
    assert knn_overlap(maps[0], maps[1], k=10) > 0.5
