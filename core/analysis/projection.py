"""2-D maps of a layer: PCA, UMAP, t-SNE; aligned across layers; how faithful they are.

Aligned maps keep each input in about the same place when a layer slider moves:
PCA maps are Procrustes-rotated (rotation/reflection + scale) onto the previous
layer's map; UMAP uses umap's AlignedUMAP with the identity relation between
consecutive layers. `trustworthiness` and `knn_overlap` say how much of the
full-dimensional neighbourhood structure a map keeps.

umap-learn compiles its numba code on first use in a process (about a minute on a
2-core machine); `warm_up_umap` pays that cost up front, e.g. in a background thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.errors import LayerscopeError

logger = logging.getLogger(__name__)

METHODS = ("pca", "umap", "tsne")
PROJECTION_VERSION = 1
TRUST_MAX_POINTS = 5000
Progress = Callable[[int, int, str], None]


def _check(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise LayerscopeError(f"{name} must be a 2-D array (n_inputs, d); got shape {X.shape}")
    if len(X) < 3:
        raise LayerscopeError(f"a map needs at least 3 inputs; {name} has {len(X)}")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise LayerscopeError(f"{name} has NaN or infinite values in {bad} inputs; the layer cannot be mapped")
    return X


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise LayerscopeError(f"method={method!r} is not a projection; choose one of {', '.join(METHODS)}")
    return method


def project(
    X: np.ndarray,
    method: str = "pca",
    *,
    n_components: int = 2,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    perplexity: float = 30.0,
) -> np.ndarray:
    """(n, d) -> (n, n_components) float32 map with PCA, UMAP or t-SNE."""
    X = _check(X)
    method = _check_method(method)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=n_components, random_state=seed).fit_transform(X).astype(np.float32)
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_components=n_components,
            n_neighbors=min(n_neighbors, len(X) - 1),
            min_dist=min_dist,
            metric=metric,
            random_state=seed,
        )
        return reducer.fit_transform(X).astype(np.float32)
    from sklearn.manifold import TSNE

    return TSNE(
        n_components=n_components,
        perplexity=min(perplexity, (len(X) - 1) / 3),
        init="pca",
        random_state=seed,
        metric=metric,
    ).fit_transform(X).astype(np.float32)


def procrustes_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotate/reflect and scale `source` (n, 2) onto `target` (n, 2); both centred first."""
    from scipy.linalg import orthogonal_procrustes

    s = source - source.mean(0)
    t = target - target.mean(0)
    rotation, scale = orthogonal_procrustes(s, t)
    norm = (s**2).sum()
    factor = scale / norm if norm > 0 else 1.0
    return (s @ rotation * factor).astype(np.float32)


def aligned_projection(
    layers: Sequence[np.ndarray],
    method: str = "pca",
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """One (n, 2) map per layer, aligned so each input keeps its place across layers."""
    method = _check_method(method)
    arrays = [_check(X, f"layer {i}") for i, X in enumerate(layers)]
    if len({len(X) for X in arrays}) > 1:
        raise LayerscopeError("every layer must have the same inputs (rows) to align their maps")
    if method == "umap":
        import umap

        n = len(arrays[0])
        relations = [{i: i for i in range(n)} for _ in range(len(arrays) - 1)]
        if progress:
            progress(0, len(arrays), "aligned UMAP")
        aligned = umap.AlignedUMAP(
            n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist, random_state=seed
        ).fit(arrays, relations=relations)
        if progress:
            progress(len(arrays), len(arrays), "aligned UMAP done")
        return [np.asarray(e, dtype=np.float32) for e in aligned.embeddings_]
    maps: list[np.ndarray] = []
    for i, X in enumerate(arrays):
        coords = project(X, method, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
        maps.append(procrustes_align(coords, maps[-1]) if maps else coords - coords.mean(0))
        if progress:
            progress(i + 1, len(arrays), f"layer {i + 1}/{len(arrays)}")
    return maps


def subsample_indices(n: int, max_points: int = 50_000, seed: int = 0) -> np.ndarray:
    """All rows when n <= max_points, else a sorted seeded random sample of max_points rows."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def trustworthiness(X: np.ndarray, Y: np.ndarray, *, n_neighbors: int = 10, max_points: int = TRUST_MAX_POINTS,
                    seed: int = 0) -> float:
    """sklearn.manifold.trustworthiness of map Y (n, 2) for data X (n, d), on at most max_points rows."""
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y, dtype=np.float32)
    rows = subsample_indices(len(X), max_points, seed)
    k = min(n_neighbors, len(rows) // 2 - 1)
    if k < 1:
        raise LayerscopeError(f"trustworthiness needs at least 4 inputs; got {len(rows)}")
    return float(sk_trustworthiness(X[rows], Y[rows], n_neighbors=k))


def knn_overlap(X: np.ndarray, Y: np.ndarray, *, k: int = 10) -> float:
    """Mean share of each input's k nearest neighbours in X that are also among them in Y."""
    from sklearn.neighbors import NearestNeighbors

    if k >= len(X):
        raise LayerscopeError(f"k={k} must be smaller than the number of inputs ({len(X)})")
    a = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y, return_distance=False)[:, 1:]
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(a, b)]))


def nearest_neighbors(X: np.ndarray, i: int, *, k: int = 10, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The k nearest inputs to input i in the full space (self excluded): indices, distances."""
    X = np.asarray(X, dtype=np.float32)
    if not 0 <= i < len(X):
        raise LayerscopeError(f"input {i} does not exist; the layer has {len(X)} inputs")
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1)
        norms[norms == 0] = 1.0
        distances = 1.0 - (X @ X[i]) / (norms * norms[i])
    elif metric == "euclidean":
        distances = np.linalg.norm(X - X[i], axis=1)
    else:
        raise LayerscopeError(f"metric={metric!r} must be 'cosine' or 'euclidean'")
    distances[i] = np.inf
    k = min(k, len(X) - 1)
    order = np.argpartition(distances, k)[:k]
    order = order[np.argsort(distances[order])]
    return order, distances[order].astype(np.float64)


def warm_up_umap(seed: int = 0) -> float:
    """Run UMAP and AlignedUMAP once on small random data to compile numba; returns seconds."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    data = [rng.normal(size=(200, 16)).astype(np.float32) for _ in range(2)]
    project(data[0], "umap", seed=seed)
    aligned_projection(data, "umap", seed=seed)
    elapsed = time.perf_counter() - start
    logger.info("UMAP warm-up took %.1f s", elapsed)
    return elapsed


# ----- cached in the store ----------------------------------------------------------
def _params(acts, method: str, seed: int, n_neighbors: int, min_dist: float, **extra: Any) -> dict[str, Any]:
    return {
        "run": acts.key,
        "method": method,
        "seed": seed,
        "n_neighbors": n_neighbors,
        "min_dist": min_dist,
        "version": PROJECTION_VERSION,
        **extra,
    }


def projection_cached(acts, layer: str, method: str, store, *, seed: int = 0, n_neighbors: int = 15,
                      min_dist: float = 0.1) -> np.ndarray:
    """The (n_inputs, 2) map of one layer of a run, from the store or computed and stored."""
    params = _params(acts, _check_method(method), seed, n_neighbors, min_dist, layer=layer)

    def compute():
        coords = project(acts.pooled(layer), method, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
        return {"coords": coords}, {"layer": layer}

    arrays, _ = store.cached_result("projection", params, compute)
    return np.asarray(arrays["coords"])


def aligned_projection_cached(acts, layers: Sequence[str], method: str, store, *, seed: int = 0,
                              n_neighbors: int = 15, min_dist: float = 0.1,
                              progress: Progress | None = None) -> list[np.ndarray]:
    """Aligned maps of the given layers of a run, from the store or computed and stored."""
    layers = list(layers)
    params = _params(acts, _check_method(method), seed, n_neighbors, min_dist, layers=layers, aligned=True)

    def compute():
        maps = aligned_projection([acts.pooled(layer) for layer in layers], method, seed=seed,
                                  n_neighbors=n_neighbors, min_dist=min_dist, progress=progress)
        return {f"map{i:03d}": m for i, m in enumerate(maps)}, {"layers": layers}

    arrays, _ = store.cached_result("aligned_projection", params, compute)
    return [np.asarray(arrays[f"map{i:03d}"]) for i in range(len(layers))]
