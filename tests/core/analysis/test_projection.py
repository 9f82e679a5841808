"""Projections: alignment across layers, faithfulness, neighbours, the store."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.projection import (
    aligned_projection,
    knn_overlap,
    nearest_neighbors,
    procrustes_align,
    project,
    subsample_indices,
    trustworthiness,
)
from core.errors import LayerscopeError


def _plane(n=300, d=40, seed=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]  # (d, 2) orthonormal
    return rng.normal(size=(n, 2)) @ basis.T * [1.0]


def test_aligned_pca__rotated_copy_lands_on_the_same_map():
    X = _plane()
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(40, 40)))[0]
    maps = aligned_projection([X, X @ rotation * 3.0], "pca")
    assert np.abs(maps[1] - maps[0]).max() < 1e-3 * np.abs(maps[0]).max()
    raw = [project(X, "pca"), project(-X[:, ::-1] @ rotation, "pca")]
    assert np.abs(raw[1] - raw[0]).max() > 0.1 * np.abs(raw[0]).max()  # unaligned maps do differ


def test_procrustes_align__recovers_rotation_and_scale():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(50, 2))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    aligned = procrustes_align(target @ rot * 5 + 3, target)
    np.testing.assert_allclose(aligned, target - target.mean(0), atol=1e-4)


def test_trustworthiness__pca_of_planar_data_is_faithful():
    X = _plane()
    assert trustworthiness(X, project(X, "pca")) > 0.99
    noise = np.random.default_rng(3).normal(size=(300, 2))
    assert trustworthiness(X, noise) < 0.8


def test_knn_overlap__identity_is_one():
    X = _plane()
    assert knn_overlap(X, X @ np.eye(40), k=5) == 1.0


def test_nearest_neighbors__excludes_self_and_sorts():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    idx, dist = nearest_neighbors(X, 0, k=2)
    assert idx.tolist() == [1, 2] and dist[0] < dist[1]
    with pytest.raises(LayerscopeError, match="input 9"):
        nearest_neighbors(X, 9)


def test_subsample_indices__deterministic_and_capped():
    a = subsample_indices(100_000, 50_000, seed=0)
    assert len(a) == 50_000 and np.array_equal(a, subsample_indices(100_000, 50_000, seed=0))
    assert np.array_equal(subsample_indices(10, 50_000), np.arange(10))


def test_project__bad_input():
    with pytest.raises(LayerscopeError, match="NaN or infinite"):
        project(np.array([[1.0, np.nan], [0, 1], [1, 1]]))
    with pytest.raises(LayerscopeError, match="method='isomap'"):
        project(np.eye(5), "isomap")


def test_projection_cached__second_call_reads_store(minilm, few_sentences, store):
    import core
    from core.analysis.projection import aligned_projection_cached

    acts = core.extract(minilm, few_sentences, layers="all", store=store)
    first = aligned_projection_cached(acts, acts.layer_names, "pca", store)
    again = aligned_projection_cached(acts, acts.layer_names, "pca", store)
    assert len(first) == 7 and first[0].shape == (40, 2)
    assert isinstance(again[3], np.ndarray)
    np.testing.assert_array_equal(first[3], again[3])
    assert list((store.root / "results" / "aligned_projection").iterdir())


@pytest.mark.slow
def test_aligned_umap__maps_every_layer():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(150, 10))
    maps = aligned_projection([base, base + 0.01 * rng.normal(size=base.shape)], "umap")
    assert len(maps) == 2 and maps[0].shape == (150, 2)
    assert knn_overlap(maps[0], maps[1], k=10) > 0.5
