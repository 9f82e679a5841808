"""2-D maps of a layer (PCA, UMAP, t-SNE), aligned across layers, and how faithful they are.

Aligned maps keep each input in about the same place when a layer slider moves:
PCA maps are Procrustes-aligned (rotation/reflection + isotropic scale, centred) onto
the previous layer's map; UMAP uses umap-learn's AlignedUMAP with the identity
relation between consecutive layers. `trustworthiness` (sklearn) and `knn_overlap`
say how much of the full-dimensional neighbourhood structure a map keeps; both run
on a seeded subsample of at most `FAITHFULNESS_MAX_POINTS` inputs.

umap-learn compiles its numba code on the first call in a process (50-77 s on a
2-core machine; n >= 4096 also compiles pynndescent). `warm_up_umap` pays that
cost up front, e.g. from a background thread at server start.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.analysis.arrays import as_matrix
from core.errors import LayerscopeError

if TYPE_CHECKING:
    from core.activations import Activations
    from core.store import Store

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]

METHODS = ("pca", "umap", "tsne")
ALIGNED_METHODS = ("pca", "umap")
METRICS = ("euclidean", "cosine")
PROJECTION_VERSION = 3  # bump when a change alters stored maps
FAITHFULNESS_MAX_POINTS = 5000
TRUST_MAX_POINTS = FAITHFULNESS_MAX_POINTS  # older name
_warm_up_lock = threading.Lock()


# ----- checks ----------------------------------------------------------------------------------
def _check_matrix(X: Any, name: str = "X", *, min_rows: int = 3) -> np.ndarray:
    """X as a finite (n, d) float32 array with at least `min_rows` rows."""
    X = as_matrix(X, name).astype(np.float32, copy=False)
    if len(X) < min_rows:
        raise LayerscopeError(f"a map needs at least {min_rows} inputs; {name} has {len(X)}")
    if X.shape[1] < 1:
        raise LayerscopeError(f"{name} has no features (shape {X.shape})")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise LayerscopeError(f"{name} has NaN or infinite values in {rows} inputs; the layer cannot be mapped")
    return X


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise LayerscopeError(f"{name}={value!r} is not supported; choose one of {', '.join(allowed)}")
    return value


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LayerscopeError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _library_version(method: str) -> str:
    package = "umap-learn" if method == "umap" else "scikit-learn"
    return f"{package} {importlib.metadata.version(package)}"


# ----- one layer ---------------------------------------------------------------------------------
def project(
    X: Any,
    method: str = "pca",
    *,
    n_components: int = 2,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    perplexity: float = 30.0,
) -> np.ndarray:
    """Map X (n, d) to (n, n_components) float32 with PCA, UMAP or t-SNE.

    metric: "euclidean" or "cosine". PCA with "cosine" is PCA of the unit-normalised
    rows (directions only). UMAP: n_neighbors and min_dist as umap-learn; a seed makes
    UMAP deterministic (and single-threaded). t-SNE: perplexity, capped at (n - 1) / 3.
    """
    method = _check_choice("method", method, METHODS)
    metric = _check_choice("metric", metric, METRICS)
    X = _check_matrix(X)
    n, d = X.shape
    n_components = _check_int("n_components", n_components, 1)
    if n_components > min(n, d):
        raise LayerscopeError(f"n_components={n_components} must be at most min(n_inputs, d)={min(n, d)}")
    if method == "pca":
        from sklearn.decomposition import PCA

        data = _unit_rows(X) if metric == "cosine" else X
        return PCA(n_components=n_components, random_state=seed).fit_transform(data).astype(np.float32)
    if method == "umap":
        n_neighbors = _check_int("n_neighbors", n_neighbors, 2)
        if not min_dist >= 0:
            raise LayerscopeError(f"min_dist={min_dist!r} must be >= 0")
        import umap

        reducer = umap.UMAP(
            n_components=n_components,
            n_neighbors=min(n_neighbors, n - 1),
            min_dist=min_dist,
            metric=metric,
            random_state=seed,
            n_jobs=1,  # a seed makes umap single-threaded anyway; saying so avoids its warning
        )
        return np.asarray(reducer.fit_transform(X), dtype=np.float32)
    from sklearn.manifold import TSNE

    if not perplexity > 0:
        raise LayerscopeError(f"perplexity={perplexity!r} must be > 0")
    return TSNE(
        n_components=n_components,
        perplexity=min(float(perplexity), (n - 1) / 3),
        init="pca",
        metric=metric,
        random_state=seed,
    ).fit_transform(X).astype(np.float32)


# ----- aligned across layers -----------------------------------------------------------------------
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


def aligned_projection(
    layers: Sequence[Any],
    method: str = "pca",
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    progress: ProgressCallback | None = None,
) -> list[np.ndarray]:
    """One (n, 2) float32 map per layer, aligned so each input keeps its place across layers.

    layers: (n, d_i) arrays over the same n inputs (widths may differ).
    method "pca": PCA per layer, each map Procrustes-aligned (rotation/reflection +
    scale, centred) onto the previous aligned map; the first map is centred.
    method "umap": umap.AlignedUMAP with relations = identity between consecutive layers.
    progress: called as progress(layers_done, n_layers, message).
    """
    method = _check_choice("method", method, ALIGNED_METHODS)
    metric = _check_choice("metric", metric, METRICS)
    if len(layers) == 0:
        raise LayerscopeError("layers is empty; give at least one (n, d) array")
    arrays = [_check_matrix(X, f"layer {i}") for i, X in enumerate(layers)]
    sizes = sorted({len(X) for X in arrays})
    if len(sizes) > 1:
        raise LayerscopeError(
            f"every layer must hold the same inputs to align their maps; got row counts {sizes}"
        )
    n, total = sizes[0], len(arrays)
    if method == "umap":
        n_neighbors = _check_int("n_neighbors", n_neighbors, 2)
        import umap

        if progress is not None:
            progress(0, total, f"aligned UMAP of {total} layers")
        started = time.perf_counter()
        relations = [{i: i for i in range(n)} for _ in range(total - 1)]
        if total == 1:  # AlignedUMAP needs two or more datasets
            maps = [project(arrays[0], "umap", seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric)]
        else:
            with warnings.catch_warnings():  # each inner UMAP warns that the seed forces n_jobs=1
                warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
                reducer = umap.AlignedUMAP(
                    n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist, metric=metric, random_state=seed
                ).fit(arrays, relations=relations)
            maps = [np.asarray(e, dtype=np.float32) for e in reducer.embeddings_]
        logger.info("aligned UMAP of %d layers x %d inputs in %.1f s", total, n, time.perf_counter() - started)
        if progress is not None:
            progress(total, total, "aligned UMAP done")
        return maps
    maps: list[np.ndarray] = []
    for i, X in enumerate(arrays):
        coords = project(X, "pca", seed=seed, metric=metric)
        maps.append(procrustes_align(coords, maps[-1]) if maps else coords - coords.mean(0))
        if progress is not None:
            progress(i + 1, total, f"PCA of layer {i + 1}/{total}")
    return maps


# ----- faithfulness and neighbours -------------------------------------------------------------------
def subsample_indices(n: int, max_points: int = 50_000, seed: int = 0) -> np.ndarray:
    """Rows to show or measure: all of range(n) when n <= max_points, else `max_points`
    rows drawn without replacement by numpy.random.default_rng(seed), sorted. (k,) int64.
    """
    n = _check_int("n", n, 0)
    max_points = _check_int("max_points", max_points, 1)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class MapFaithfulness:
    """How much of the full-dimensional neighbourhood structure a 2-D map keeps."""

    trustworthiness: float  # sklearn.manifold.trustworthiness, in [0, 1]
    knn_overlap: float  # mean share of k nearest neighbours kept, in [0, 1]
    n_neighbors: int  # k used by both
    n_points: int  # inputs measured (a seeded subsample of at most max_points)
    seed: int  # seed of the subsample


def _paired_rows(X: Any, Y: Any, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = _check_matrix(X, "X", min_rows=4)
    Y = _check_matrix(Y, "Y", min_rows=4)
    if len(X) != len(Y):
        raise LayerscopeError(f"X has {len(X)} inputs but the map Y has {len(Y)}; they must match row for row")
    rows = subsample_indices(len(X), max_points, seed)
    return X[rows], Y[rows]


def _check_neighbors(k: Any, n: int, name: str) -> int:
    k = _check_int(name, k, 1)
    if k >= n / 2:
        raise LayerscopeError(f"{name}={k} must be smaller than half the number of inputs measured ({n})")
    return k


def trustworthiness(
    X: Any,
    Y: Any,
    n_neighbors: int = 10,
    *,
    max_points: int = FAITHFULNESS_MAX_POINTS,
    seed: int = 0,
    metric: str = "euclidean",
) -> float:
    """sklearn.manifold.trustworthiness of the map Y (n, 2) of X (n, d), as a float in [0, 1].

    Runs on `subsample_indices(n, max_points, seed)` (the size is logged; see
    `map_faithfulness` for a result that carries it).
    """
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    metric = _check_choice("metric", metric, METRICS)
    X, Y = _paired_rows(X, Y, max_points, seed)
    k = _check_neighbors(n_neighbors, len(X), "n_neighbors")
    value = float(sk_trustworthiness(X, Y, n_neighbors=k, metric=metric))
    logger.info("trustworthiness %.4f on %d points (k=%d, seed=%d)", value, len(X), k, seed)
    return value


def _neighbour_sets(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(X)
    neighbours = index.kneighbors(X, return_distance=False)  # (n, k + 1), usually self first
    rows = np.arange(len(X))[:, None]
    # drop self wherever it landed (duplicates can push it out of first place)
    not_self = neighbours != rows
    keep = np.where(not_self.all(axis=1, keepdims=True), np.arange(k + 1) < k, not_self)
    return neighbours[keep].reshape(len(X), k)


def knn_overlap(
    X: Any,
    Y: Any,
    k: int = 10,
    *,
    max_points: int = FAITHFULNESS_MAX_POINTS,
    seed: int = 0,
    metric: str = "euclidean",
) -> float:
    """Mean over inputs of |N_k^X(i) & N_k^Y(i)| / k: the share of each input's k nearest
    neighbours in X (metric) that stay among its k nearest in the map Y (euclidean).
    Self is excluded; runs on `subsample_indices(n, max_points, seed)`.
    """
    metric = _check_choice("metric", metric, METRICS)
    X, Y = _paired_rows(X, Y, max_points, seed)
    k = _check_neighbors(k, len(X), "k")
    a = _neighbour_sets(X, k, metric)
    b = _neighbour_sets(Y, k, "euclidean")
    shared = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return float(shared.mean() / k)


def map_faithfulness(
    X: Any,
    Y: Any,
    *,
    n_neighbors: int = 10,
    max_points: int = FAITHFULNESS_MAX_POINTS,
    seed: int = 0,
    metric: str = "euclidean",
) -> MapFaithfulness:
    """Trustworthiness and kNN overlap of the map Y of X on one seeded subsample."""
    value = trustworthiness(X, Y, n_neighbors, max_points=max_points, seed=seed, metric=metric)
    overlap = knn_overlap(X, Y, n_neighbors, max_points=max_points, seed=seed, metric=metric)
    n_points = min(len(np.asarray(X)), max_points)
    return MapFaithfulness(value, overlap, int(n_neighbors), int(n_points), int(seed))


def nearest_neighbors(X: Any, i: int, k: int = 10, *, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The k inputs nearest to input i in the full-dimensional space, self excluded.

    X (n, d); metric "cosine" (1 - cosine similarity; a zero vector is at distance 1)
    or "euclidean". Returns indices (k,) int64 and distances (k,) float64, nearest
    first, ties by index.
    """
    metric = _check_choice("metric", metric, METRICS)
    X = as_matrix(X)
    n = len(X)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
        raise LayerscopeError(f"input {i!r} does not exist; the layer has {n} inputs (0 to {n - 1})")
    k = min(_check_int("k", k, 1), n - 1)
    query = np.asarray(X[i], dtype=np.float64)
    distances = np.empty(n)
    for start in range(0, n, 16384):  # blocks: X may be a large memmap
        block = np.asarray(X[start : start + 16384], dtype=np.float64)
        if metric == "cosine":
            norms = np.linalg.norm(block, axis=1) * np.linalg.norm(query)
            sims = np.divide(block @ query, norms, out=np.zeros(len(block)), where=norms > 0)
            distances[start : start + len(block)] = 1.0 - sims
        else:
            distances[start : start + len(block)] = np.linalg.norm(block - query, axis=1)
    if not np.isfinite(distances).all():
        raise LayerscopeError("X has NaN or infinite values; neighbours cannot be found")
    distances[i] = np.inf
    order = np.argsort(distances, kind="stable")[:k]
    return order.astype(np.int64), distances[order]


# ----- UMAP warm-up ----------------------------------------------------------------------------------
def preload_imports() -> None:
    """Import scikit-learn's projection modules in the calling thread.

    Call it before starting `warm_up_umap` in a background thread: two threads
    importing scikit-learn for the first time at once can see it half-initialised.
    """
    import sklearn.decomposition  # noqa: F401
    import sklearn.manifold  # noqa: F401
    import sklearn.neighbors  # noqa: F401


def warm_up_umap(*, seed: int = 0, nndescent: bool = False) -> float:
    """Compile umap-learn's numba code by mapping small random data; returns seconds spent.

    Runs UMAP and AlignedUMAP on 64 random points (exact neighbours). nndescent=True
    also maps 4096 points, which compiles pynndescent (used from 4096 inputs up).
    Safe to call from a background thread; concurrent calls wait for the first.
    """
    started = time.perf_counter()
    with _warm_up_lock:
        rng = np.random.default_rng(seed)
        data = [rng.standard_normal((64, 8)).astype(np.float32) for _ in range(2)]
        project(data[0], "umap", seed=seed, n_neighbors=5)
        aligned_projection(data, "umap", seed=seed, n_neighbors=5)
        if nndescent:
            project(rng.standard_normal((4096, 8)).astype(np.float32), "umap", seed=seed)
    elapsed = time.perf_counter() - started
    logger.info("UMAP warm-up took %.1f s", elapsed)
    return elapsed


# ----- cached in the store ---------------------------------------------------------------------------
def _rows_of(acts: Activations, layer: str) -> np.ndarray:
    """(n_inputs, d) vectors of one layer: the pooled layer, or the mean of each input's tokens."""
    pooled = getattr(acts, "pooled", None)
    return pooled(layer) if pooled is not None else acts[layer]


def projection_cached(
    acts: Activations,
    layer: str,
    method: str,
    store: Store,
    *,
    n_components: int = 2,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    perplexity: float = 30.0,
) -> np.ndarray:
    """The (n_inputs, n_components) map of one layer of a run, read from the store or computed."""
    method = _check_choice("method", method, METHODS)
    metric = _check_choice("metric", metric, METRICS)
    if layer not in acts.layer_names:
        raise LayerscopeError(f"layer {layer!r} is not in run {acts.key}; it has {', '.join(acts.layer_names)}")
    params = {
        "run": acts.key,
        "layer": layer,
        "aligned": False,
        "method": method,
        "n_components": int(n_components),
        "seed": int(seed),
        "n_neighbors": int(n_neighbors),
        "min_dist": float(min_dist),
        "metric": metric,
        "perplexity": float(perplexity),
        "library": _library_version(method),
        "version": PROJECTION_VERSION,
    }

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        coords = project(
            _rows_of(acts, layer),
            method,
            n_components=n_components,
            seed=seed,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            perplexity=perplexity,
        )
        return {"coords": coords}, {"layer": layer}

    arrays, _ = store.cached_result("projection", params, compute)
    return np.asarray(arrays["coords"])


def aligned_projection_cached(
    acts: Activations,
    layers: Sequence[str],
    method: str,
    store: Store,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    progress: ProgressCallback | None = None,
) -> list[np.ndarray]:
    """Aligned (n_inputs, 2) maps of `layers` of a run (see aligned_projection), through the store."""
    method = _check_choice("method", method, ALIGNED_METHODS)
    metric = _check_choice("metric", metric, METRICS)
    layers = [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in layers if name not in acts.layer_names]
    if unknown or not layers:
        raise LayerscopeError(
            f"layers {', '.join(map(repr, unknown)) or '(none given)'} not in run {acts.key}; "
            f"it has {', '.join(acts.layer_names)}"
        )
    params = {
        "run": acts.key,
        "layers": layers,
        "aligned": True,
        "method": method,
        "n_components": 2,
        "seed": int(seed),
        "n_neighbors": int(n_neighbors),
        "min_dist": float(min_dist),
        "metric": metric,
        "library": _library_version(method),
        "version": PROJECTION_VERSION,
    }

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        maps = aligned_projection(
            [_rows_of(acts, name) for name in layers],
            method,
            seed=seed,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            progress=progress,
        )
        return {f"map{i:03d}": m for i, m in enumerate(maps)}, {"layers": layers}

    arrays, _ = store.cached_result("projection", params, compute)
    if progress is not None:
        progress(len(layers), len(layers), "maps ready")
    return [np.asarray(arrays[f"map{i:03d}"]) for i in range(len(layers))]
