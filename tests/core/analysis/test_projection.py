"""Projections: alignment across layers, faithfulness, neighbours, subsampling, the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.activations import Activations
from core.analysis import projection
from core.analysis.projection import (
    aligned_projection,
    aligned_projection_cached,
    knn_overlap,
    map_faithfulness,
    nearest_neighbors,
    procrustes_align,
    project,
    projection_cached,
    subsample_indices,
    trustworthiness,
    warm_up_umap,
)
from core.errors import LayerscopeError
from core.store import Store


# ----- helpers -------------------------------------------------------------------------
def _plane(n: int = 300, d: int = 40, seed: int = 0) -> np.ndarray:
    """Points on a random 2-D plane through the origin of R^d, with unequal spreads."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]  # (d, 2) orthonormal
    return (rng.normal(size=(n, 2)) * [3.0, 1.0]) @ basis.T


def _rotation(d: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


def _write_run(folder: Path, layers: dict[str, np.ndarray]) -> Activations:
    """A minimal complete pooled run folder read back as Activations."""
    (folder / "layers").mkdir(parents=True)
    files = {}
    for i, (name, array) in enumerate(layers.items()):
        files[name] = f"layers/{i:03d}.npy"
        np.save(folder / files[name], array)
    meta = {
        "layers": list(layers),
        "layer_files": files,
        "pooling": "mean",
        "n_inputs": len(next(iter(layers.values()))),
        "dims": {name: int(a.shape[1]) for name, a in layers.items()},
        "model": {"name": "toy", "modality": "text"},
        "dataset": {"name": "toy"},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return Activations(folder, meta)


# ----- aligned maps ----------------------------------------------------------------------
def test_aligned_pca__rotated_scaled_copy_lands_on_the_same_map():
    X = _plane()
    copy = X @ _rotation(40, 1) * 3.0 + 5.0  # same geometry, rotated, scaled and shifted
    maps = aligned_projection([X, copy], "pca")
    assert np.abs(maps[1] - maps[0]).max() < 1e-3 * np.abs(maps[0]).max()
    raw = [project(X, "pca"), project(copy, "pca")]
    assert np.abs(raw[1] - raw[0]).max() > 0.5 * np.abs(raw[0]).max()  # unaligned maps do differ


def test_aligned_pca__reflected_layer_is_flipped_back():
    X = _plane()
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


# ----- faithfulness -----------------------------------------------------------------------
def test_trustworthiness__pca_of_planar_data_is_faithful_noise_is_not():
    X = _plane()
    assert trustworthiness(X, project(X, "pca")) > 0.99
    noise = np.random.default_rng(3).normal(size=(300, 2))
    assert trustworthiness(X, noise) < 0.8


def test_trustworthiness__subsample_is_seeded_and_reported():
    X = _plane(n=400)
    Y = project(X, "pca") + np.random.default_rng(5).normal(scale=0.5, size=(400, 2))
    a = map_faithfulness(X, Y, max_points=150, seed=1)
    b = map_faithfulness(X, Y, max_points=150, seed=1)
    assert a == b and a.n_points == 150 and a.seed == 1
    assert map_faithfulness(X, Y, max_points=1000).n_points == 400


def test_knn_overlap__identity_is_one_noise_is_low():
    X = _plane()
    assert knn_overlap(X, X @ _rotation(40, 6), k=5) == 1.0
    assert knn_overlap(X, np.random.default_rng(7).normal(size=(300, 2)), k=5) < 0.2


def test_knn_overlap__counts_shared_neighbours():
    # on a line, the 2 nearest neighbours of interior points are the two adjacent ones
    line = np.arange(12, dtype=float)[:, None]
    shuffled = line.copy()
    shuffled[[3, 8]] = shuffled[[8, 3]]  # two points swapped in the "map"
    value = knn_overlap(line, np.hstack([shuffled, np.zeros_like(shuffled)]), k=2)
    assert 0.5 < value < 1.0


def test_faithfulness__bad_input_names_the_problem():
    X = _plane(n=20)
    with pytest.raises(LayerscopeError, match="X has 20 inputs but the map Y has 19"):
        trustworthiness(X, X[:19, :2])
    with pytest.raises(LayerscopeError, match="n_neighbors=10 must be smaller than half"):
        trustworthiness(X, X[:, :2], n_neighbors=10)


# ----- neighbours -------------------------------------------------------------------------
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


# ----- subsampling ------------------------------------------------------------------------
def test_subsample_indices__deterministic_sorted_and_capped():
    a = subsample_indices(100_000, 50_000, seed=0)
    assert len(a) == 50_000 and len(np.unique(a)) == 50_000 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, subsample_indices(100_000, 50_000, seed=0))
    assert not np.array_equal(a, subsample_indices(100_000, 50_000, seed=1))
    assert np.array_equal(subsample_indices(10, 50_000), np.arange(10))


# ----- one-layer maps and bad input -------------------------------------------------------
def test_project__pca_cosine_ignores_row_length():
    X = _plane(n=100) + 10.0
    scaled = X * np.random.default_rng(9).uniform(0.5, 5, size=(100, 1))  # each row rescaled
    np.testing.assert_allclose(project(X, "pca", metric="cosine"), project(scaled, "pca", metric="cosine"), atol=1e-4)


def test_project__tsne_gives_float32_map():
    X = _plane(n=60)
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


# ----- the store --------------------------------------------------------------------------
def test_projection_cached__second_call_reads_store(tmp_path, monkeypatch):
    rng = np.random.default_rng(10)
    acts = _write_run(tmp_path / "run", {"a": rng.normal(size=(40, 6)), "b": rng.normal(size=(40, 6))})
    store = Store(tmp_path / "workspace")
    calls = {"aligned": 0, "project": 0}
    real_aligned, real_project = projection.aligned_projection, projection.project

    def counting_aligned(*args, **kwargs):
        calls["aligned"] += 1
        return real_aligned(*args, **kwargs)

    def counting_project(*args, **kwargs):
        calls["project"] += 1
        return real_project(*args, **kwargs)

    monkeypatch.setattr(projection, "aligned_projection", counting_aligned)
    monkeypatch.setattr(projection, "project", counting_project)
    first = aligned_projection_cached(acts, ["a", "b"], "pca", store)
    again = aligned_projection_cached(acts, ["a", "b"], "pca", store)
    assert calls["aligned"] == 1
    assert len(first) == 2 and first[0].shape == (40, 2)
    np.testing.assert_array_equal(first[1], again[1])
    one = projection_cached(acts, "b", "pca", store)
    calls_after_first = calls["project"]
    np.testing.assert_array_equal(one, projection_cached(acts, "b", "pca", store))
    assert calls["project"] == calls_after_first  # no recomputation
    assert not np.array_equal(one, projection_cached(acts, "b", "pca", store, seed=1, metric="cosine"))
    assert len(list((store.root / "results" / "projection").iterdir())) == 3
    with pytest.raises(LayerscopeError, match="'zz' not in run"):
        aligned_projection_cached(acts, ["a", "zz"], "pca", store)


# ----- UMAP (numba compilation: about a minute on a fresh 2-core process) ------------------
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
