"""The 2-D map of one layer: PCA, UMAP or t-SNE of its (n, d) activations."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.analysis.arrays import as_matrix
from core.errors import LayerscopeError
from core.validation import check_choice, check_int, check_number

METHODS = ("pca", "umap", "tsne")
METRICS = ("euclidean", "cosine")


def check_matrix(X: Any, name: str = "X", *, min_rows: int = 3) -> np.ndarray:
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


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


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
    method = check_choice("method", method, METHODS)
    metric = check_choice("metric", metric, METRICS)
    X = check_matrix(X)
    n, d = X.shape
    n_components = check_int("n_components", n_components, low=1)
    if n_components > min(n, d):
        raise LayerscopeError(f"n_components={n_components} must be at most min(n_inputs, d)={min(n, d)}")
    if method == "pca":
        from sklearn.decomposition import PCA

        data = _unit_rows(X) if metric == "cosine" else X
        return PCA(n_components=n_components, random_state=seed).fit_transform(data).astype(np.float32)
    if method == "umap":
        n_neighbors = check_int("n_neighbors", n_neighbors, low=2)
        min_dist = check_number("min_dist", min_dist, low=0)
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

    perplexity = check_number("perplexity", perplexity, low=0, low_open=True)
    return TSNE(
        n_components=n_components,
        perplexity=min(perplexity, (n - 1) / 3),
        init="pca",
        metric=metric,
        random_state=seed,
    ).fit_transform(X).astype(np.float32)
