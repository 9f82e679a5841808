"""Maps of several layers aligned so that each input keeps about the same place across layers.

PCA maps are Procrustes-aligned (rotation/reflection + isotropic scale, centred) onto
the previous layer's map; UMAP uses umap-learn's AlignedUMAP with the identity
relation between consecutive layers.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.analysis.projection.maps import METRICS, check_matrix, project
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.validation import check_choice, check_int

logger = logging.getLogger(__name__)

ALIGNED_METHODS = ("pca", "umap")


def procrustes_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`source` (n, k) rotated/reflected and scaled onto `target` (n, k), both centred.

    Orthogonal Procrustes (scipy): R = argmin ||S R - T||_F over orthogonal R, then the
    isotropic scale s = ||T||_F / ||S||_F, so the aligned map keeps the target's spread. (The
    least-squares scale trace(R^T S^T T) / ||S||^2 shrinks a map towards 0 when two layers
    differ, and chained over layers the maps of deep layers collapse to a dot.)
    Returns the aligned source, centred, float32.
    """
    from scipy.linalg import orthogonal_procrustes

    s = np.asarray(source, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if s.shape != t.shape:
        raise LayerscopeError(f"cannot align a map of shape {s.shape} onto one of shape {t.shape}")
    s = s - s.mean(0)
    t = t - t.mean(0)
    rotation, _ = orthogonal_procrustes(s, t)
    norm_s, norm_t = float(np.linalg.norm(s)), float(np.linalg.norm(t))
    scale = norm_t / norm_s if norm_s > 0 and norm_t > 0 else 1.0
    return (s @ rotation * scale).astype(np.float32)


def _aligned_umap(
    arrays: list[np.ndarray], *, seed: int, n_neighbors: int, min_dist: float, metric: str, progress: Progress | None
) -> list[np.ndarray]:
    """umap.AlignedUMAP of (n, d_i) arrays with the identity relation between consecutive layers."""
    import umap

    n, total = len(arrays[0]), len(arrays)
    report(progress, 0, total, f"aligned UMAP of {total} layers")
    started = time.perf_counter()
    if total == 1:  # AlignedUMAP needs two or more datasets
        maps = [project(arrays[0], "umap", seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric)]
    else:
        relations = [{i: i for i in range(n)} for _ in range(total - 1)]
        with warnings.catch_warnings():  # each inner UMAP warns that the seed forces n_jobs=1
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            reducer = umap.AlignedUMAP(
                n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist, metric=metric, random_state=seed
            ).fit(arrays, relations=relations)
        maps = [np.asarray(e, dtype=np.float32) for e in reducer.embeddings_]
    logger.info("aligned UMAP of %d layers x %d inputs in %.1f s", total, n, time.perf_counter() - started)
    report(progress, total, total, "aligned UMAP done")
    return maps


def aligned_projection(
    layers: Sequence[Any],
    method: str = "pca",
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """One (n, 2) float32 map per layer, aligned so each input keeps its place across layers.

    layers: (n, d_i) arrays over the same n inputs (widths may differ).
    method "pca": PCA per layer, each map Procrustes-aligned (rotation/reflection +
    scale, centred) onto the previous aligned map; the first map is centred.
    method "umap": umap.AlignedUMAP with relations = identity between consecutive layers.
    progress: called as progress(layers_done, n_layers, message).
    """
    method = check_choice("method", method, ALIGNED_METHODS)
    metric = check_choice("metric", metric, METRICS)
    if len(layers) == 0:
        raise LayerscopeError("layers is empty; give at least one (n, d) array")
    arrays = [check_matrix(X, f"layer {i}") for i, X in enumerate(layers)]
    sizes = sorted({len(X) for X in arrays})
    if len(sizes) > 1:
        raise LayerscopeError(f"every layer must hold the same inputs to align their maps; got row counts {sizes}")
    if method == "umap":
        n_neighbors = check_int("n_neighbors", n_neighbors, low=2)
        return _aligned_umap(
            arrays, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, progress=progress
        )
    maps: list[np.ndarray] = []
    for i, X in enumerate(arrays):
        coords = project(X, "pca", seed=seed, metric=metric)
        maps.append(procrustes_align(coords, maps[-1]) if maps else coords - coords.mean(0))
        report(progress, i + 1, len(arrays), f"PCA of layer {i + 1}/{len(arrays)}")
    return maps
