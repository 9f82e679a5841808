"""Each layer's similarity to the same layer of the final checkpoint, across training (Raghu et al. 2017, Fig. 4).

Only the diagonal is computed: checkpoint c's layer l against the final checkpoint's layer l,
each cell through `similarity_matrix` with one layer on each side (cached in the store like
any similarity), never the full layer x layer matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from core.analysis.dynamics.by_checkpoint import KIND
from core.analysis.dynamics.result import DYNAMICS_VERSION, DynamicsResult
from core.analysis.dynamics.series_runs import check_series_layers, open_runs, step_values
from core.progress import Progress, report
from core.validation import check_int

if TYPE_CHECKING:
    from core.series import Series
    from core.store import Store

TO_FINAL_METRICS = ("linear_cka", "mutual_knn", "svcca", "debiased_cka", "rbf_cka", "rsa")  # offered first


def similarity_to_final(
    store: Store,
    series: Series,
    metric: str = "linear_cka",
    *,
    metric_params: Mapping[str, Any] | None = None,
    layers: tuple[str, ...] | None = None,
    seed: int = 0,
    max_points: int | None = 5000,
    progress: Progress | None = None,
) -> DynamicsResult:
    """(n_checkpoints, n_layers) similarity of every layer at every checkpoint to that layer at the final one.

    metric: any registered similarity metric (core.analysis.similarity), with `metric_params`
    (k, variance, ...; defaults filled). Rows are subsampled to `max_points` with `seed` (the same
    inputs everywhere; None = all). The last row compares the final checkpoint with itself
    (1 for CKA). progress(done, total, what) counts cells.
    """
    from core.analysis.similarity import get_metric, similarity_matrix

    chosen = get_metric(metric)
    filled = chosen.fill_params(dict(metric_params or {}))
    names = check_series_layers(series, layers)
    seed = check_int("seed", seed)
    max_points = None if max_points is None else check_int("max_points", max_points, low=2)
    runs = open_runs(store, series)
    params = {"series": series.key, "runs": list(series.run_keys), "metric": chosen.name, **filled,
              "to": "final", "layers": list(names), "seed": seed, "max_points": max_points,
              "version": DYNAMICS_VERSION}
    total = len(runs) * len(names)

    def compute() -> DynamicsResult:
        values = np.full((len(runs), len(names)), np.nan)
        reasons: list[tuple[str, str, str]] = []
        n_used = None
        for i, (acts, step) in enumerate(zip(runs, series.steps, strict=True)):
            for j, layer in enumerate(names):
                report(progress, i * len(names) + j, total, f"{chosen.short_name} of {layer} at {step} vs final")
                cell = similarity_matrix(acts, runs[-1], chosen.name, layers_a=(layer,), layers_b=(layer,),
                                         store=store, seed=seed, max_points=max_points, **filled)
                values[i, j] = cell.matrix[0, 0]
                n_used = cell.n
                if not np.isfinite(values[i, j]):
                    reasons.append((step, layer, cell.reason_at(0, 0) or "undefined"))
        report(progress, total, total, f"{chosen.short_name} to the final checkpoint")
        return DynamicsResult(quantity=chosen.name, label=f"{chosen.label(filled)} to the final checkpoint",
                              unit="", series=series.key, steps=series.steps, step_values=step_values(series),
                              run_keys=series.run_keys, layer_names=names, values=values, reasons=tuple(reasons),
                              params={**params, "n": n_used, "is_distance": chosen.is_distance})

    return store.cached(KIND, params, compute, DynamicsResult)


def steps_to_reach(result: DynamicsResult, fraction: float = 0.9) -> dict[str, float]:
    """Per layer: the first checkpoint's step (x value) from which the similarity stays >= `fraction` of its final value.

    "Stays": the layer is counted as converged at the first checkpoint after which it never
    drops below the threshold again, so a passing spike early in training does not count.
    NaN for a layer whose final value is undefined.
    """
    x = result.x_values
    reached = {}
    for j, layer in enumerate(result.layer_names):
        column = result.values[:, j]
        final = column[-1]
        if not np.isfinite(final):
            reached[layer] = float("nan")
            continue
        below = np.flatnonzero(~(column >= fraction * final))  # NaN counts as below
        first = 0 if not below.size else int(below[-1]) + 1
        reached[layer] = float(x[first]) if first < len(x) else float("nan")
    return reached
