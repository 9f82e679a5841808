"""ProbeResult: held-out probe scores per layer, with the control task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# bump when a change alters stored results; 2: the gradient test relative to the loss, named controls
PROBE_VERSION = 2


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """Held-out probe scores for every layer of one run, with the control task.

    Arrays are float64 in `layer_names` order. Standard deviations are over folds
    (ddof=0, as `cross_val_score(...).std()`). The control is named in
    params["control"] ("shuffled", "task"; core.analysis.probes.controls); with
    "none" the control arrays are NaN.
    """

    layer_names: tuple[str, ...]  # probed layers, in the order given
    mean: np.ndarray  # (n_layers,) mean held-out score over folds
    std: np.ndarray  # (n_layers,) std of the held-out score over folds
    scores: np.ndarray  # (n_layers, n_folds) held-out score of each fold
    control_mean: np.ndarray  # (n_layers,) the same for the control task
    control_std: np.ndarray  # (n_layers,)
    control_scores: np.ndarray  # (n_layers, n_folds)
    chance: float  # majority-class share (accuracy); 0.0 for R^2 (predicting the mean)
    metric: str  # "accuracy" or "r2"
    n: int  # inputs used
    n_dropped: int  # inputs dropped because their label was missing (dropna=True)
    params: dict[str, Any] = field(default_factory=dict)  # task, C or alphas, n_folds, seed, ...
    details: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "alpha" or "n_iter", (n_layers, n_folds)

    @property
    def best_layer(self) -> str:
        """The layer with the highest mean held-out score (the first one on a tie)."""
        return self.layer_names[int(np.nanargmax(self.mean))]

    @property
    def selectivity(self) -> np.ndarray:
        """(n_layers,) score minus the score of the control in params["control"] (Hewitt & Liang 2019)."""
        return self.mean - self.control_mean

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: layer, metric, mean, std, control_mean, control_std, selectivity, chance."""
        import pandas as pd

        return pd.DataFrame(
            {
                "layer": list(self.layer_names),
                "metric": self.metric,
                "mean": self.mean,
                "std": self.std,
                "control_mean": self.control_mean,
                "control_std": self.control_std,
                "selectivity": self.selectivity,
                "chance": self.chance,
            }
        )


def make_result(
    layer_names: Sequence[str],
    scores: np.ndarray,
    control_scores: np.ndarray,
    *,
    chance: float,
    metric: str,
    n: int,
    n_dropped: int,
    params: dict[str, Any],
    details: dict[str, np.ndarray],
) -> ProbeResult:
    """A ProbeResult from per-fold scores (n_layers, n_folds); means and stds are taken over folds."""
    scores = np.asarray(scores, dtype=np.float64)
    control_scores = np.asarray(control_scores, dtype=np.float64)
    return ProbeResult(
        layer_names=tuple(layer_names),
        mean=scores.mean(axis=1),
        std=scores.std(axis=1),
        scores=scores,
        control_mean=control_scores.mean(axis=1),
        control_std=control_scores.std(axis=1),
        control_scores=control_scores,
        chance=float(chance),
        metric=metric,
        n=int(n),
        n_dropped=int(n_dropped),
        params=params,
        details={k: np.asarray(v) for k, v in details.items()},
    )
