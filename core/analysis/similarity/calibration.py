"""Results of calibrating a similarity matrix: a permutation null and a bootstrap interval.

Both start from the rows `similarity_matrix` compares (the same subsample of inputs for
every layer, drawn with its seed) so that their observed matrix is the heatmap's matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.activations import Activations
from core.analysis.similarity.registry import DISTANCE_METRICS, get_metric
from core.validation import check_number

DEFAULT_ALPHA = 0.05  # cells with p >= alpha are "not above the null"


def compared_rows(n_inputs: int, seed: int, max_points: int | None) -> np.ndarray | None:
    """The sorted rows `similarity_matrix` compares (None = all): the same draw from the same seed."""
    if max_points is not None and n_inputs > max_points:
        return np.sort(np.random.default_rng(seed).choice(n_inputs, max_points, replace=False))
    return None


def layer_rows(acts: Activations | Mapping[str, Any], layer: str, rows: np.ndarray | None) -> np.ndarray:
    """(n, d) rows of one layer of a run (pooled) or of a mapping, subsampled to `rows`."""
    values = acts.pooled(layer) if isinstance(acts, Activations) else acts[layer]
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    return values if rows is None else values[rows]


@dataclass(frozen=True)
class NullResult:
    """A similarity matrix with its permutation null: rows of run B shuffled, every cell recomputed."""

    metric: str  # name of a registered Metric
    params: dict[str, Any]  # metric parameters with defaults filled
    layers_a: tuple[str, ...]  # run A's layers (rows)
    layers_b: tuple[str, ...]  # run B's layers (columns)
    observed: np.ndarray  # (La, Lb) the similarity matrix itself
    null_mean: np.ndarray  # (La, Lb) mean over permutations
    null_std: np.ndarray  # (La, Lb) standard deviation over permutations (ddof=1)
    p_value: np.ndarray  # (La, Lb) (1 + #{null at least as similar}) / (1 + n_permutations)
    null: np.ndarray  # (n_permutations, La, Lb) float32, every draw
    n_permutations: int  # draws of the null
    seed: int  # seed of the row subsample and (with a second word) of the permutations
    run_a: str | None  # store key of run A (None for arrays)
    run_b: str | None  # store key of run B
    n: int  # inputs compared
    n_inputs: int  # inputs in the runs
    max_points: int | None  # row cap; None = all inputs
    info: dict[str, Any]  # model names, route, device, version

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in DISTANCE_METRICS

    @property
    def label(self) -> str:
        return get_metric(self.metric).label(self.params)

    def above_null(self, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
        """(La, Lb) bool: cells whose p-value is below `alpha` (NaN cells are False)."""
        alpha = check_number("alpha", alpha, low=0, low_open=True, high=1)
        with np.errstate(invalid="ignore"):
            return np.asarray(self.p_value < alpha)

    def cell(self, layer_a: str, layer_b: str) -> dict[str, float]:
        """Observed value, null mean, null std and p-value of one cell."""
        i, j = self.layers_a.index(layer_a), self.layers_b.index(layer_b)
        return {"observed": float(self.observed[i, j]), "null_mean": float(self.null_mean[i, j]),
                "null_std": float(self.null_std[i, j]), "p_value": float(self.p_value[i, j])}


@dataclass(frozen=True)
class BootstrapResult:
    """A similarity matrix with percentile bootstrap intervals over inputs."""

    metric: str  # name of a registered Metric
    params: dict[str, Any]  # metric parameters with defaults filled
    layers_a: tuple[str, ...]  # run A's layers (rows)
    layers_b: tuple[str, ...]  # run B's layers (columns)
    observed: np.ndarray  # (La, Lb) the similarity matrix on all compared inputs
    low: np.ndarray  # (La, Lb) lower end of the interval
    high: np.ndarray  # (La, Lb) upper end of the interval
    draws: np.ndarray  # (n_boot, La, Lb) float32, the value on every resample (NaN where undefined)
    level: float  # coverage of the interval, e.g. 0.95
    n_boot: int  # resamples
    seed: int  # seed of the row subsample and (with a second word) of the resamples
    duplicates: str  # "kept": resamples with replacement; "dropped": each resample's distinct inputs
    run_a: str | None  # store key of run A (None for arrays)
    run_b: str | None  # store key of run B
    n: int  # inputs compared
    n_inputs: int  # inputs in the runs
    max_points: int | None  # row cap; None = all inputs
    info: dict[str, Any]  # model names, device, version

    @property
    def label(self) -> str:
        return get_metric(self.metric).label(self.params)

    def cell(self, layer_a: str, layer_b: str) -> dict[str, float]:
        """Observed value and interval of one cell."""
        i, j = self.layers_a.index(layer_a), self.layers_b.index(layer_b)
        return {"observed": float(self.observed[i, j]), "low": float(self.low[i, j]), "high": float(self.high[i, j])}
