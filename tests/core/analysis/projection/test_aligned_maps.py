"""Aligned maps: each input keeps its place across layers."""

from __future__ import annotations

import numpy as np

from core.analysis.projection import aligned_projection, procrustes_align, project


def test_aligned_pca__rotated_scaled_copy_lands_on_the_same_map(plane, rotation):
    X = plane()
    copy = X @ rotation(40, 1) * 3.0 + 5.0  # same geometry, rotated, scaled and shifted
    maps = aligned_projection([X, copy], "pca")
    assert np.abs(maps[1] - maps[0]).max() < 1e-3 * np.abs(maps[0]).max()
    raw = [project(X, "pca"), project(copy, "pca")]
    assert np.abs(raw[1] - raw[0]).max() > 0.5 * np.abs(raw[0]).max()  # unaligned maps do differ


def test_aligned_pca__reflected_layer_is_flipped_back(plane):
    X = plane()
    flipped = project(X, "pca") * [-1.0, 1.0]  # a 2-D layer whose PCA is the mirror image
    maps = aligned_projection([X, flipped], "pca")
    assert np.abs(maps[1] - maps[0]).max() < 1e-3 * np.abs(maps[0]).max()


def test_aligned_pca__maps_are_centred_float32_and_report_progress():
    rng = np.random.default_rng(4)
    layers = [rng.normal(size=(50, 8)) + 3, rng.normal(size=(50, 12))]  # widths may differ
    calls = []
    maps = aligned_projection(layers, "pca", progress=lambda done, total, msg: calls.append((done, total)))
    assert [m.shape for m in maps] == [(50, 2), (50, 2)] and all(m.dtype == np.float32 for m in maps)
    np.testing.assert_allclose(maps[0].mean(0), 0, atol=1e-5)
    assert calls[-1] == (2, 2)


def test_procrustes_align__recovers_rotation_and_scale():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(50, 2))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    aligned = procrustes_align(target @ rot * 5 + 3, target)
    np.testing.assert_allclose(aligned, target - target.mean(0), atol=1e-4)


def test_aligned_pca__maps_of_unrelated_layers_keep_their_spread():
    """Least-squares scaling would shrink each map onto a poorly matching predecessor; chained
    over layers the last maps collapse to a dot."""
    rng = np.random.default_rng(4)
    layers = [rng.normal(size=(300, 20)) for _ in range(8)]  # each layer unrelated to the last
    maps = aligned_projection(layers, "pca")
    spreads = [float(np.linalg.norm(m)) for m in maps]
    np.testing.assert_allclose(spreads, spreads[0], rtol=1e-4)
