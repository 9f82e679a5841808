"""A per-layer metric at every checkpoint of a series: probe score or a geometry metric, as one matrix.

Each checkpoint's values come from the function the single-run pages use
(`probe_by_layer_cached`, `geometry_by_layer`), through the store, so a checkpoint already
probed or measured is read back; the assembled matrix is stored too (kind "dynamics").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from core.analysis.dynamics.result import DYNAMICS_VERSION, DynamicsResult
from core.analysis.dynamics.series_runs import open_runs, step_values
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.validation import check_choice

if TYPE_CHECKING:
    from core.series import Series
    from core.store import Store

KIND = "dynamics"  # the store's folder for dynamics matrices
# name -> what it measures at each layer (feeds a dropdown)
LAYER_METRICS: dict[str, str] = {
    "probe": "held-out linear probe accuracy (classification) or R² (regression) of a label column",
    "intrinsic_dimension": "TwoNN intrinsic dimension of the pooled vectors",
    "dataset_entropy": "normalised Rényi matrix entropy of the pooled vectors",
    "effective_rank": "Roy & Vetterli effective rank of the centred pooled vectors",
    "curvature": "mean turning angle of each input's token trajectory (per-token series only)",
}
TOKEN_METRICS = ("curvature",)  # measured over each input's tokens


def check_layer_metric(metric: Any, series: Series, column: str | None = None) -> str:
    """`metric` if it is one of LAYER_METRICS and the series can give it (pooling, a label column)."""
    metric = check_choice("metric", metric, LAYER_METRICS)
    if metric in TOKEN_METRICS and series.pooling != "tokens":
        raise LayerscopeError(f"metric={metric!r} needs a per-token series (pooling='tokens'); series {series.name} "
                              f"was extracted with pooling={series.pooling!r}")
    if metric == "probe" and not column:
        raise LayerscopeError("metric='probe' needs column=: the label column to probe")
    return metric


def metric_by_checkpoint(
    store: Store,
    series: Series,
    metric: str,
    *,
    column: str | None = None,
    task: str = "auto",
    control: str = "none",
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> DynamicsResult:
    """`metric` at every layer of every checkpoint of `series`: a (n_checkpoints, n_layers) matrix.

    metric: one of LAYER_METRICS. "probe" probes label `column` (5-fold CV, `seed`) with
    `task` ("auto", "classification", "regression") and `control` ("none" by default: the
    matrix holds the main score; see core.analysis.probes.controls); inputs without a label
    and classes too rare for the folds are left out. Geometry metrics take `options`
    (core.analysis.geometry.DEFAULT_OPTIONS) and `seed`. progress(done, total, what) counts checkpoints.
    """
    from core.analysis.geometry import DEFAULT_OPTIONS

    metric = check_layer_metric(metric, series, column)
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise LayerscopeError(f"unknown geometry options {unknown}; allowed: {', '.join(DEFAULT_OPTIONS)}")
    runs = open_runs(store, series)
    if metric == "probe":
        runs[-1].labels(column)  # a column the dataset lacks fails now, naming the columns there are
    params: dict[str, Any] = {"series": series.key, "runs": list(series.run_keys), "metric": metric,
                              "seed": int(seed), "version": DYNAMICS_VERSION}
    if metric == "probe":
        params.update(column=column, task=task, control=control)
    else:
        params["options"] = {k: v for k, v in sorted(options.items()) if k != "device"}
    total = len(runs)

    def compute() -> DynamicsResult:
        values = np.full((len(runs), len(series.layers)), np.nan)
        reasons: list[tuple[str, str, str]] = []
        recorded: dict[str, Any] = {}
        label = unit = ""
        for i, (acts, step) in enumerate(zip(runs, series.steps, strict=True)):
            report(progress, i, total, f"{metric} at checkpoint {step} ({i + 1} of {total})")
            if metric == "probe":
                row, why, recorded, label, unit = _probe_row(store, acts, column, task, control, seed)
            else:
                row, why, recorded, label, unit = _geometry_row(store, acts, metric, options, seed)
            values[i] = row
            reasons += [(step, layer, r) for layer, r in zip(series.layers, why) if r]
        report(progress, total, total, f"{metric} at {total} checkpoints")
        return DynamicsResult(quantity=metric, label=label, unit=unit, series=series.key, steps=series.steps,
                              step_values=step_values(series), run_keys=series.run_keys,
                              layer_names=series.layers, values=values, reasons=tuple(reasons),
                              params={**params, "analysis": recorded})  # the per-run analysis' own params

    return store.cached(KIND, params, compute, DynamicsResult)


def _probe_row(store, acts, column, task, control, seed):
    """One checkpoint's probe scores per layer, no reasons, the probe's params, its label and unit."""
    from core.analysis.probes import probe_by_layer_cached

    result = probe_by_layer_cached(acts, column, store, task=task, control=control, seed=seed, dropna=True,
                                   drop_rare=True)
    score = "accuracy" if result.metric == "accuracy" else "R²"
    kept = {k: v for k, v in result.params.items() if k not in ("run", "layers")}
    return (np.asarray(result.mean, dtype=float), [None] * len(result.mean), kept,
            f"probe {score} ({column})", "")


def _geometry_row(store, acts, metric, options, seed):
    """One checkpoint's geometry metric per layer, the reason of each NaN, the options used, label and unit."""
    from core.analysis.geometry import METRIC_UNITS, geometry_by_layer

    result = geometry_by_layer(acts, (metric,), store=store, seed=seed, **options)
    kept = {k: v for k, v in result.params.items() if k not in ("run", "layers", "metrics", "device", "id_points_used")}
    return (np.asarray(result.mean[metric], dtype=float), list(result.layer_reasons[metric]), kept,
            f"{metric.replace('_', ' ')} ({_variant(metric, result.params)})", METRIC_UNITS.get(metric, ""))


def _variant(metric: str, p: Mapping[str, Any]) -> str:
    """The convention a geometry metric was computed with, for its label: "TwoNN", "α=1, exact", "signed"."""
    if metric == "intrinsic_dimension":
        return "TwoNN" if p["id_method"] == "twonn" else "MLE"
    if metric == "dataset_entropy":
        return f"α={p['entropy_alpha']:g}, {p.get('entropy_variant', 'exact')}"
    if metric == "curvature":
        return f"{p['curvature_variant']}, short inputs {p.get('curvature_degenerate', 'skip')}"
    return "Roy & Vetterli"
