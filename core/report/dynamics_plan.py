"""What a series' report holds: a per-layer metric as heatmap and curves, convergence to the final
checkpoint, and one layer's map across checkpoints (the dynamics page's figures, with its defaults)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.errors import LayerscopeError
from core.export.sidecar import figure_spec

DEFAULT_METRICS = ("probe", "effective_rank", "intrinsic_dimension", "dataset_entropy")  # "probe" with a label column
DEFAULT_SIMILARITIES = ("linear_cka", "mutual_knn")


def check_series_request(store, series, *, metrics: Sequence[str], similarities: Sequence[str],
                         layer: str | None, column: str | None) -> None:
    """LayerscopeError, before any work, for a metric the series cannot give, an unknown similarity,
    a layer it lacks or a label column its dataset lacks."""
    from core.analysis.dynamics import check_layer_metric
    from core.analysis.dynamics.series_runs import check_series_layer
    from core.analysis.similarity import check_metric

    for metric in metrics:
        check_layer_metric(metric, series, column)
    for metric in similarities:
        check_metric(metric)
    if layer is not None:
        check_series_layer(series, layer)
    if column is not None:
        if not store.has_run(series.final_key):
            raise LayerscopeError(f"run {series.final_key} of series {series.name} is not in the workspace {store.root}")
        store.open_run(series.final_key, verify=False).labels(column)  # names the columns there are


def plan_series_report(
    store,
    series,
    *,
    metrics: Sequence[str] | None = None,
    similarities: Sequence[str] = DEFAULT_SIMILARITIES,
    layer: str | None = None,
    column: str | None = None,
) -> list[dict[str, Any]]:
    """Specs of a series' dynamics figures.

    metrics: per-layer metrics drawn as a checkpoint x layer heatmap and as curves over training
    (default: DEFAULT_METRICS that fit: "probe" when there is a label column, "curvature" added
    for a per-token series). similarities: each drawn as convergence curves to the final
    checkpoint and as a heatmap. layer: the layer whose map is animated across checkpoints
    (default the middle one). column: the label column probed and colouring the map (default
    the dataset's first).
    """
    final = store.open_run(series.final_key, verify=False)
    if column is None and final.label_columns:
        column = final.label_columns[0]
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m != "probe" or column]
        metrics += ["curvature"] if series.pooling == "tokens" else []
    layer = layer or series.layers[len(series.layers) // 2]
    check_series_request(store, series, metrics=metrics, similarities=similarities, layer=layer, column=column)
    runs = list(series.run_keys)
    specs = []
    for metric in metrics:
        extra = {"column": column} if metric == "probe" else {}
        specs.append(figure_spec("dynamics_heatmap", runs, series=series.key, metric=metric, **extra))
        specs.append(figure_spec("dynamics_curves", runs, series=series.key, metric=metric, over="step", **extra))
    for metric in similarities:
        specs.append(figure_spec("convergence_curves", runs, series=series.key, metric=metric, fraction=0.9))
        specs.append(figure_spec("dynamics_heatmap", runs, series=series.key, metric=metric))
    specs.append(figure_spec("checkpoint_map", runs, series=series.key, layer=layer, method="pca", color_by=column))
    return specs
