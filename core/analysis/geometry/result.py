"""Geometry metrics of every layer of a run, and the names they go by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# name accepted in `metrics` -> what it measures (feeds a dropdown)
GEOMETRY_METRICS: dict[str, str] = {
    "curvature": "mean turning angle of each input's token trajectory (radians), averaged over inputs",
    "intrinsic_dimension": "TwoNN (or MLE) intrinsic dimension of the pooled vectors",
    "dataset_entropy": "normalised Rényi matrix entropy of the pooled vectors of all inputs",
    "prompt_entropy": "normalised Rényi matrix entropy over the tokens of one input, averaged over inputs",
    "effective_rank": "Roy & Vetterli effective rank of the centred pooled vectors",
    "anisotropy": "mean cosine of random pairs of pooled vectors and top-eigenvalue share of their covariance",
}
# name in `metrics` -> metric names in the result
RESULT_METRICS: dict[str, tuple[str, ...]] = {
    "curvature": ("curvature",),
    "intrinsic_dimension": ("intrinsic_dimension",),
    "dataset_entropy": ("dataset_entropy",),
    "prompt_entropy": ("prompt_entropy",),
    "effective_rank": ("effective_rank",),
    "anisotropy": ("anisotropy_mean_cosine", "anisotropy_top_eigenvalue_share"),
}
METRIC_UNITS: dict[str, str] = {
    "curvature": "radians",
    "intrinsic_dimension": "dimensions",
    "dataset_entropy": "fraction of log(min(n, d))",
    "prompt_entropy": "fraction of log(min(T, d))",
    "effective_rank": "dimensions",
    "anisotropy_mean_cosine": "cosine",
    "anisotropy_top_eigenvalue_share": "fraction of variance",
}
PER_INPUT_METRICS = ("curvature", "prompt_entropy")  # measured per input over its tokens


@dataclass(frozen=True, eq=False)
class GeometryResult:
    """Geometry metrics for every layer of one run.

    Arrays are (n_layers,) float64 in `layer_names` order. Per-input metrics (curvature,
    prompt_entropy) give the mean over inputs and its 25th/75th percentiles; dataset-level
    metrics have NaN q25/q75.
    """

    layer_names: tuple[str, ...]  # layers in model order
    metrics: tuple[str, ...]  # result metric names, e.g. "anisotropy_mean_cosine"
    mean: dict[str, np.ndarray]  # metric -> (n_layers,) value (mean over inputs for per-input metrics)
    q25: dict[str, np.ndarray]  # metric -> (n_layers,) 25th percentile over inputs, NaN if not per-input
    q75: dict[str, np.ndarray]  # metric -> (n_layers,) 75th percentile over inputs, NaN if not per-input
    n_skipped: dict[str, np.ndarray]  # metric -> (n_layers,) int, inputs left out (too short, empty, ...)
    reasons: dict[str, str | None]  # metric -> why some values are NaN or inputs skipped; None if none
    layer_reasons: dict[str, tuple[str | None, ...]]  # metric -> per-layer reason (None where fine)
    params: dict[str, Any]  # run, pooling, options, seed, max_points, ID subsample, version
    # (n_layers,) int: duplicate points removed before the intrinsic-dimension fit; None when
    # intrinsic_dimension was not computed, or in results stored before the count was kept
    n_duplicates: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        """pandas DataFrame in long form: layer, metric, value, q25, q75 (one row per layer x metric)."""
        import pandas as pd

        rows = [
            {
                "layer": layer,
                "metric": metric,
                "value": float(self.mean[metric][i]),
                "q25": float(self.q25[metric][i]),
                "q75": float(self.q75[metric][i]),
            }
            for metric in self.metrics
            for i, layer in enumerate(self.layer_names)
        ]
        return pd.DataFrame(rows, columns=["layer", "metric", "value", "q25", "q75"])
