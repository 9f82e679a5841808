"""What a dynamics analysis returns: a value per (checkpoint, layer), and one layer's maps across checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DYNAMICS_VERSION = 1  # bump when a change alters stored dynamics results


@dataclass(frozen=True, eq=False)
class DynamicsResult:
    """A per-layer quantity at every checkpoint of a series, as a (n_checkpoints, n_layers) matrix.

    Rows follow the series (oldest checkpoint first), columns its layers in model order.
    NaN cells are undefined; `reasons` says why.
    """

    quantity: str  # what was measured: "probe", a geometry metric, or a similarity metric's name
    label: str  # the quantity in words, with its options: "probe accuracy (digit)", "linear CKA to the final checkpoint"
    unit: str  # the value's unit ("" when it has none)
    series: str  # the series' store key
    steps: tuple[str, ...]  # checkpoint labels, oldest first
    step_values: np.ndarray  # (n_checkpoints,) float64 training step of each checkpoint, NaN where unknown
    run_keys: tuple[str, ...]  # the run of each checkpoint
    layer_names: tuple[str, ...]  # layers, in model order
    values: np.ndarray  # (n_checkpoints, n_layers) float64
    reasons: tuple[tuple[str, str, str], ...]  # (checkpoint label, layer, why NaN)
    params: dict[str, Any]  # every option that changed the values, seeds included

    @property
    def x_values(self) -> np.ndarray:
        """(n_checkpoints,) the training step where every checkpoint has one, else 0..n-1."""
        if np.all(np.isfinite(self.step_values)):
            return self.step_values
        return np.arange(len(self.steps), dtype=float)

    @property
    def has_step_values(self) -> bool:
        return bool(np.all(np.isfinite(self.step_values)))

    def to_frame(self) -> pd.DataFrame:
        """Long form: checkpoint, step, layer, value (one row per cell)."""
        import pandas as pd

        rows = [{"checkpoint": label, "step": float(self.step_values[i]), "layer": layer,
                 "value": float(self.values[i, j])}
                for i, label in enumerate(self.steps) for j, layer in enumerate(self.layer_names)]
        return pd.DataFrame(rows, columns=["checkpoint", "step", "layer", "value"])


@dataclass(frozen=True, eq=False)
class CheckpointMaps:
    """One layer's 2-D map at every checkpoint, aligned so each input keeps about its place across training."""

    layer: str  # the layer mapped
    method: str  # "pca" (Procrustes-aligned onto the previous checkpoint) or "umap" (AlignedUMAP)
    series: str  # the series' store key
    steps: tuple[str, ...]  # checkpoint labels, oldest first
    coords: np.ndarray  # (n_checkpoints, n_inputs, 2) float32
    params: dict[str, Any]  # method, seed, version
