"""Which checkpoint series the Training dynamics page shows, and which metrics fit it.

Pure functions over `core.series.Series`; no streamlit. A series is named in pickers by its
name, dataset, number of checkpoints and pooling; the page opens on the series picked before,
else the newest. Curvature is a per-token metric, so it is offered only on per-token series.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.analysis.dynamics import LAYER_METRICS, TOKEN_METRICS
from core.data.naming import display_name
from core.series import Series

BUNDLED_SERIES = "digits-mlp:series"  # the bundled series: digits-mlp saved at checkpoints of its training
BUNDLED_DATA = "demo:digits"  # the inputs the bundled series is extracted on
POOLING_WORDS = {"mean": "mean-pooled", "max": "max-pooled", "first": "first token", "last": "last token",
                 "tokens": "per-token"}
# metric of the heatmap and curves (core.analysis.dynamics.LAYER_METRICS) -> how the picker names it
METRIC_NAMES = {
    "probe": "Probe accuracy (of a label column)",
    "intrinsic_dimension": "Intrinsic dimension",
    "dataset_entropy": "Dataset entropy",
    "effective_rank": "Effective rank",
    "curvature": "Curvature",
}
DEFAULT_METRIC = "effective_rank"  # the page opens on it: seconds per series, and no label column needed
SIMILARITY_NAMES = {"linear_cka": "Linear CKA", "mutual_knn": "Mutual k-NN"}  # offered against the final checkpoint


def describe_series(series: Series) -> str:
    """One line telling a series apart: name · dataset · n checkpoints · pooling."""
    pooling = POOLING_WORDS.get(series.pooling, series.pooling)
    return f"{series.name} · {display_name(series.dataset)} · {len(series)} checkpoints · {pooling}"


def series_details(series: Series) -> str:
    """What a caption adds under the picker: first and last checkpoint, layers, key."""
    return (f"{series.steps[0]} → {series.steps[-1]} · {len(series.layers)} layers · "
            f"from {series.model} · series {series.key[:8]}")


def choose_series(series: Sequence[Series], current: str | None) -> str | None:
    """Key of the series the page opens on: the current one while it exists, else the newest; None if none."""
    if not series:
        return None
    keys = [s.key for s in series]
    return current if current in keys else keys[0]


def metric_choices(series: Series) -> list[str]:
    """The per-layer metrics the heatmap can show for `series` (curvature only when it is per-token)."""
    return [m for m in LAYER_METRICS if series.pooling == "tokens" or m not in TOKEN_METRICS]


def series_command(data: str = "<dataset>") -> str:
    """The command that extracts one's own checkpoints as a series."""
    return f"python -m core series --model <folder of checkpoints> --data {data}"


def series_table(series: Sequence[Series]) -> pd.DataFrame:
    """One row per series, for the Workspace's list of stored runs."""
    return pd.DataFrame({
        "name": [s.name for s in series],
        "dataset": [display_name(s.dataset) for s in series],
        "checkpoints": [len(s) for s in series],
        "first → last": [f"{s.steps[0]} → {s.steps[-1]}" for s in series],
        "pooling": [s.pooling for s in series],
        "layers": [len(s.layers) for s in series],
        "key": [s.key for s in series],
    })


def default_x_axis(series: Series) -> str:
    """"step" when checkpoints are evenly spaced in training steps, else "checkpoint" (one even space each),
    so that log-spaced saves do not crowd early training into the axis' first few pixels."""
    values = series.step_values
    if any(v is None for v in values) or len(values) < 3:
        return "step"
    gaps = np.diff(np.asarray(values, dtype=float))
    return "step" if np.allclose(gaps, gaps[0], rtol=0.05) else "checkpoint"
