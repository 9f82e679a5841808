"""A layer x layer similarity matrix and the summaries read from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.analysis.similarity.registry import DISTANCE_METRICS, get_metric
from core.errors import LayerscopeError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SimilarityResult:
    """Similarity of every layer of run A with every layer of run B on the same inputs."""

    metric: str  # name of a registered Metric
    params: dict[str, Any]  # metric parameters with defaults filled (k, clip_quantile, bandwidth, variance)
    layers_a: tuple[str, ...]  # run A's layers (matrix rows), in model order
    layers_b: tuple[str, ...]  # run B's layers (matrix columns), in model order
    matrix: np.ndarray  # (La, Lb) float64; NaN where undefined (see reasons)
    run_a: str | None  # store key of run A (None for arrays)
    run_b: str | None  # store key of run B
    n: int  # inputs compared (after subsampling to max_points)
    n_inputs: int  # inputs in the runs
    seed: int  # seed of the row subsample
    max_points: int | None  # row cap; None = all inputs
    reasons: tuple[tuple[str | None, str | None, str], ...]  # (layer_a or None = all, layer_b or None = all, why NaN)
    info: dict[str, Any]  # model names, device, version

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in DISTANCE_METRICS

    @property
    def label(self) -> str:
        """Metric name with its variant, e.g. 'mutual k-NN (k=10, no clipping)'."""
        return get_metric(self.metric).label(self.params)

    def reason_at(self, i: int, j: int) -> str | None:
        """Why cell (i, j) is NaN, or None."""
        la, lb = self.layers_a[i], self.layers_b[j]
        found = [r for a, b, r in self.reasons if a in (None, la) and b in (None, lb)]
        return "; ".join(found) or None

    def best_match(self) -> tuple[str | None, ...]:
        """Run B's best-matching layer for each of run A's layers (None where the row is all NaN)."""
        best = best_match_per_layer(self.matrix, higher_is_better=self.higher_is_better)
        return tuple(self.layers_b[j] if j >= 0 else None for j in best)

    def best_pair(self) -> tuple[str, str, float] | None:
        """(layer_a, layer_b, value) of the most similar pair, None if every cell is NaN."""
        found = best_pair(self.matrix, higher_is_better=self.higher_is_better)
        return None if found is None else (self.layers_a[found[0]], self.layers_b[found[1]], found[2])

    def diagonal_on_relative_depth(self) -> float:
        """Mean value along the relative-depth diagonal (see `diagonal_on_relative_depth`)."""
        return diagonal_on_relative_depth(self.matrix)

    def to_frame(self) -> pd.DataFrame:
        """pandas DataFrame in long form: layer_a, layer_b, value (one row per cell)."""
        import pandas as pd

        rows = [
            {"layer_a": la, "layer_b": lb, "value": float(self.matrix[i, j])}
            for i, la in enumerate(self.layers_a)
            for j, lb in enumerate(self.layers_b)
        ]
        return pd.DataFrame(rows, columns=["layer_a", "layer_b", "value"])


def _matrix_of(matrix: np.ndarray | SimilarityResult, higher_is_better: bool | None) -> tuple[np.ndarray, bool]:
    if isinstance(matrix, SimilarityResult):
        direction = matrix.higher_is_better if higher_is_better is None else higher_is_better
        return np.asarray(matrix.matrix, dtype=np.float64), direction
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or 0 in values.shape:
        raise LayerscopeError(f"matrix must be a non-empty 2-D array (layers A, layers B); got shape {values.shape}")
    return values, True if higher_is_better is None else higher_is_better


def best_match_per_layer(
    matrix: np.ndarray | SimilarityResult, *, higher_is_better: bool | None = None
) -> np.ndarray:
    """(La,) index of the best B layer for each A layer (argmax; argmin for distances), -1 for all-NaN rows.

    higher_is_better: default True for an array, the metric's direction for a SimilarityResult.
    """
    values, higher = _matrix_of(matrix, higher_is_better)
    scored = np.where(np.isnan(values), -np.inf, values if higher else -values)
    best = np.argmax(scored, axis=1)
    return np.where(np.isnan(values).all(axis=1), -1, best)


def best_pair(
    matrix: np.ndarray | SimilarityResult, *, higher_is_better: bool | None = None
) -> tuple[int, int, float] | None:
    """(i, j, value) of the most similar cell (max; min for distances); None if every cell is NaN."""
    values, higher = _matrix_of(matrix, higher_is_better)
    if np.isnan(values).all():
        return None
    flat = np.nanargmax(values) if higher else np.nanargmin(values)
    i, j = np.unravel_index(flat, values.shape)
    return int(i), int(j), float(values[i, j])


def diagonal_on_relative_depth(matrix: np.ndarray | SimilarityResult) -> float:
    """Mean value along the relative-depth diagonal (0 = first layer, 1 = last on both sides).

    Samples max(La, Lb) depths t in [0, 1] and reads the matrix at (t (La - 1), t (Lb - 1)) by
    bilinear interpolation; with La == Lb this is the mean of the diagonal. Samples touching a
    NaN cell with non-zero weight are left out; NaN if all are.
    """
    values, _ = _matrix_of(matrix, None)
    la, lb = values.shape
    samples = []
    for t in np.linspace(0.0, 1.0, max(la, lb)) if max(la, lb) > 1 else [0.0]:
        y, x = t * (la - 1), t * (lb - 1)
        y0, x0 = min(int(np.floor(y)), la - 1), min(int(np.floor(x)), lb - 1)
        wy, wx = y - y0, x - x0
        total = 0.0
        for dy, w_y in ((0, 1 - wy), (1, wy)):
            for dx, w_x in ((0, 1 - wx), (1, wx)):
                weight = w_y * w_x
                if weight > 1e-12:
                    total += weight * values[min(y0 + dy, la - 1), min(x0 + dx, lb - 1)]
        samples.append(total)
    samples = np.asarray(samples)
    return float(np.nanmean(samples)) if not np.isnan(samples).all() else math.nan
