"""How much of a layer's full-dimensional neighbourhood structure its 2-D map keeps.

`trustworthiness` (sklearn) and `knn_overlap` both run on a seeded subsample of at
most `FAITHFULNESS_MAX_POINTS` inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.analysis.projection.maps import METRICS, check_matrix
from core.analysis.projection.sampling import subsample_indices
from core.errors import LayerscopeError
from core.validation import check_choice, check_int

logger = logging.getLogger(__name__)

FAITHFULNESS_MAX_POINTS = 5000
TRUST_MAX_POINTS = FAITHFULNESS_MAX_POINTS  # older name


@dataclass(frozen=True)
class MapFaithfulness:
    """How much of the full-dimensional neighbourhood structure a 2-D map keeps."""

    trustworthiness: float  # sklearn.manifold.trustworthiness, in [0, 1]
    knn_overlap: float  # mean share of k nearest neighbours kept, in [0, 1]
    n_neighbors: int  # k used by both
    n_points: int  # inputs measured (a seeded subsample of at most max_points)
    seed: int  # seed of the subsample


def _measured(
    X: Any, Y: Any, k: Any, k_name: str, *, max_points: int, seed: int, metric: str
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """The subsampled rows of X (m, d) and its map Y (m, 2), k and the metric, all checked."""
    metric = check_choice("metric", metric, METRICS)
    X = check_matrix(X, "X", min_rows=4)
    Y = check_matrix(Y, "Y", min_rows=4)
    if len(X) != len(Y):
        raise LayerscopeError(f"X has {len(X)} inputs but the map Y has {len(Y)}; they must match row for row")
    rows = subsample_indices(len(X), max_points, seed)
    k = check_int(k_name, k, low=1)
    if k >= len(rows) / 2:
        raise LayerscopeError(f"{k_name}={k} must be smaller than half the number of inputs measured ({len(rows)})")
    return X[rows], Y[rows], k, metric


def _trustworthiness(X: np.ndarray, Y: np.ndarray, k: int, metric: str, seed: int) -> float:
    """sklearn.manifold.trustworthiness of measured rows (see _measured)."""
    from sklearn.manifold import trustworthiness as sk_trustworthiness

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


def _knn_overlap(X: np.ndarray, Y: np.ndarray, k: int, metric: str) -> float:
    """Mean share of each measured row's k nearest neighbours in X that stay among its k nearest in Y."""
    a = _neighbour_sets(X, k, metric)
    b = _neighbour_sets(Y, k, "euclidean")
    shared = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return float(shared.mean() / k)


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
    X, Y, k, metric = _measured(X, Y, n_neighbors, "n_neighbors", max_points=max_points, seed=seed, metric=metric)
    return _trustworthiness(X, Y, k, metric, seed)


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
    X, Y, k, metric = _measured(X, Y, k, "k", max_points=max_points, seed=seed, metric=metric)
    return _knn_overlap(X, Y, k, metric)


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
    X, Y, k, metric = _measured(X, Y, n_neighbors, "n_neighbors", max_points=max_points, seed=seed, metric=metric)
    return MapFaithfulness(_trustworthiness(X, Y, k, metric, seed), _knn_overlap(X, Y, k, metric), k, len(X), int(seed))
