"""ProbeResult: held-out probe scores per layer, with the control task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# bump when a change alters stored results; 2: the gradient test relative to the loss, named controls;
# 3: each input's out-of-fold prediction kept (held_out), for bootstrap intervals over inputs
PROBE_VERSION = 3


def _no_predictions() -> np.ndarray:
    return np.empty((0, 0))


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
    # (n_layers, n) each input's prediction by the fold model that did not see it: class index (accuracy)
    # or value (r2); (0, 0) in results stored before PROBE_VERSION 3
    held_out: np.ndarray = field(default_factory=_no_predictions)
    held_out_target: np.ndarray = field(default_factory=lambda: np.empty(0))  # (n,) class index or target value

    @property
    def has_held_out(self) -> bool:
        """Whether the result keeps each input's out-of-fold prediction (PROBE_VERSION >= 3)."""
        return self.held_out.ndim == 2 and self.held_out.shape == (len(self.layer_names), self.n) and self.n > 0

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
    held_out: np.ndarray | None = None,
    held_out_target: np.ndarray | None = None,
) -> ProbeResult:
    """A ProbeResult from per-fold scores (n_layers, n_folds); means and stds are taken over folds.

    held_out (n_layers, n), held_out_target (n,): each input's out-of-fold prediction and label.
    """
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
        held_out=_no_predictions() if held_out is None else np.asarray(held_out),
        held_out_target=np.empty(0) if held_out_target is None else np.asarray(held_out_target),
    )
