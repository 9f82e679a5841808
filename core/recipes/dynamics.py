"""Training-dynamics figures of a checkpoint series: a per-layer quantity as a checkpoint x layer heatmap
and as curves, each layer's convergence to its final state, and one layer's map across checkpoints.

A spec's runs are the series' runs (oldest first, so a sidecar names every checkpoint's run)
and its params hold the series' key, whose entry gives the checkpoints' labels and steps.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from core.errors import LayerscopeError
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register
from core.validation import check_choice, check_number

PAGE = "views/dynamics.py"


def series_of(context: Context, runs, series: str):
    """The Series `series` with `runs` as its checkpoints' runs (they differ only when runs were extracted again)."""
    from core.series import open_series

    found = context.cached(("series", series), lambda: open_series(context.store, series))
    if runs and list(runs) != list(found.run_keys):
        if len(runs) != len(found.run_keys):
            raise LayerscopeError(f"series {series} has {len(found.run_keys)} checkpoints but the figure names "
                                  f"{len(runs)} runs")
        found = dataclasses.replace(found, run_keys=tuple(runs))
    return found


def is_layer_metric(metric: str) -> bool:
    from core.analysis.dynamics import LAYER_METRICS

    return metric in LAYER_METRICS


def dynamics_result(context: Context, series, metric: str, *, column: str | None = None,
                    options: Mapping[str, Any] | None = None, metric_params: Mapping[str, Any] | None = None):
    """The DynamicsResult of `metric`: a per-layer metric (LAYER_METRICS) at every checkpoint, or a similarity
    metric's similarity of each layer to the final checkpoint; through the store, computed once per context."""
    from core.analysis.dynamics import LAYER_METRICS, metric_by_checkpoint, similarity_to_final
    from core.analysis.similarity import METRIC_NAMES

    if not is_layer_metric(metric) and metric not in METRIC_NAMES:
        check_choice("metric", metric, (*LAYER_METRICS, *METRIC_NAMES))

    def compute():
        if is_layer_metric(metric):
            return metric_by_checkpoint(context.store, series, metric, column=column, options=options)
        return similarity_to_final(context.store, series, metric, metric_params=metric_params)

    key = ("dynamics", series.key, tuple(series.run_keys), metric, column,
           json.dumps(dict(options or {}), sort_keys=True), json.dumps(dict(metric_params or {}), sort_keys=True))
    return context.cached(key, compute)


def _analysis(result) -> dict[str, Any]:
    return {"metric": result.quantity, "variant": result.label, "parameters": result.params,
            "seeds": {"seed": result.params.get("seed")}, "checkpoints": list(result.steps),
            "reasons": [list(r) for r in result.reasons]}


def _series_words(series) -> str:
    return f"{len(series)} checkpoints of {series.name} on {series.dataset}"


@register("dynamics_heatmap", page=PAGE)
def dynamics_heatmap_recipe(context: Context, runs, *, series: str, metric: str, column: str | None = None,
                            options: Mapping[str, Any] | None = None, metric_params: Mapping[str, Any] | None = None,
                            title: str | None = None) -> BuiltFigure:
    """A per-layer quantity at every checkpoint of a series, as a checkpoint x layer heatmap."""
    from core.figures.dynamics import dynamics_heatmap

    found = series_of(context, runs, series)
    result = dynamics_result(context, found, metric, column=column, options=options, metric_params=metric_params)
    fig = dynamics_heatmap(result, title=title or f"{result.label} · {found.name}")
    caption = f"{result.label} at every layer (x) and checkpoint (y) of {_series_words(found)}."
    return BuiltFigure(fig, result.to_frame(), _analysis(result), caption, f"dynamics-heatmap-{metric}", result=result)


@register("dynamics_curves", page=PAGE)
def dynamics_curves_recipe(context: Context, runs, *, series: str, metric: str, over: str = "step",
                           column: str | None = None, options: Mapping[str, Any] | None = None,
                           metric_params: Mapping[str, Any] | None = None, x_axis: str = "step",
                           title: str | None = None) -> BuiltFigure:
    """A per-layer quantity across a series as curves: one per layer over training (over="step") or one per
    checkpoint over the layers (over="layer"); x_axis: "step" or "checkpoint" (evenly spaced)."""
    from core.figures.dynamics import CURVES_OVER, X_AXES, dynamics_curves

    over = check_choice("over", over, CURVES_OVER)
    x_axis = check_choice("x_axis", x_axis, X_AXES)
    found = series_of(context, runs, series)
    result = dynamics_result(context, found, metric, column=column, options=options, metric_params=metric_params)
    fig = dynamics_curves(result, over=over, title=title, x_axis=x_axis)
    per = "one curve per layer over training" if over == "step" else "one curve per checkpoint over the layers"
    caption = f"{result.label} across {_series_words(found)}: {per}."
    return BuiltFigure(fig, result.to_frame(), {**_analysis(result), "over": over, "x_axis": x_axis}, caption,
                       f"dynamics-curves-{metric}-{over}", result=result)


@register("convergence_curves", page=PAGE)
def convergence_recipe(context: Context, runs, *, series: str, metric: str = "linear_cka",
                       metric_params: Mapping[str, Any] | None = None, fraction: float = 0.9,
                       x_axis: str = "step", title: str | None = None) -> BuiltFigure:
    """Each layer's similarity to the same layer of the final checkpoint over training (bottom-up convergence)."""
    from core.analysis.dynamics import steps_to_reach
    from core.figures.dynamics import X_AXES, convergence_curves

    x_axis = check_choice("x_axis", x_axis, X_AXES)
    if is_layer_metric(metric):
        raise LayerscopeError(f"metric={metric!r} is a per-layer metric; convergence needs a similarity metric "
                              "such as linear_cka, mutual_knn or svcca")
    fraction = check_number("fraction", fraction, low=0, high=1, low_open=True)
    found = series_of(context, runs, series)
    result = dynamics_result(context, found, metric, metric_params=metric_params)
    fig = convergence_curves(result, fraction=fraction, title=title, x_axis=x_axis)
    reached = steps_to_reach(result, fraction)
    table = result.to_frame().merge(pd.DataFrame({"layer": list(reached), "reached_at": list(reached.values())}),
                                    on="layer")
    order = ", ".join(f"{layer} {_step(x)}" for layer, x in reached.items())
    caption = (f"{result.label} of each layer over {_series_words(found)}; diamonds mark the step from which a layer "
               f"stays at or above {fraction:g} of its final value ({order}).")
    analysis = {**_analysis(result), "fraction": fraction, "x_axis": x_axis, "reached_at": reached}
    return BuiltFigure(fig, table, analysis, caption, f"convergence-{metric}", result=result)


def _step(x: float) -> str:
    return "never" if not np.isfinite(x) else f"{x:g}"


@register("checkpoint_map", page=PAGE)
def checkpoint_map_recipe(context: Context, runs, *, series: str, layer: str, method: str = "pca",
                          color_by: str | None = None, max_points: int | None = 50_000,
                          title: str | None = None) -> BuiltFigure:
    """One layer's aligned 2-D map animated across the checkpoints of a series."""
    from core.analysis.dynamics import checkpoint_maps
    from core.figures.dynamics import animated_checkpoint_map
    from core.recipes.maps import METHOD_AXES, drawn_rows

    found = series_of(context, runs, series)
    final = context.run(found.final_key)
    if color_by is not None:
        final.labels(color_by)  # a column the dataset lacks fails here, naming those it has
    maps = context.cached(("checkpoint_maps", found.key, tuple(found.run_keys), layer, method),
                          lambda: checkpoint_maps(context.store, found, layer, method=method))
    drawn = drawn_rows(final, max_points=max_points)
    axis = METHOD_AXES[method]
    labels = final.table[final.label_columns] if final.label_columns else None
    fig = animated_checkpoint_map(maps.coords, found.steps, texts=final.texts, labels=labels, color_by=color_by,
                                  rows=drawn, axis_name=axis,
                                  title=title or f"{found.name} · {layer} · {axis} map across checkpoints")
    table = pd.concat([pd.DataFrame({"checkpoint": step, "row": drawn, "x": c[drawn, 0], "y": c[drawn, 1]})
                       for step, c in zip(found.steps, maps.coords)], ignore_index=True)
    variant = ("PCA of each checkpoint, Procrustes-aligned onto the previous checkpoint" if method == "pca"
               else "AlignedUMAP across checkpoints")
    caption = (f"{axis} map of layer {layer} at {_series_words(found)} ({variant}; animated in HTML)"
               + (f", coloured by {color_by}" if color_by else "") + f"; {len(drawn):,} inputs drawn.")
    analysis = {"metric": f"{axis} projection", "variant": variant, "parameters": {**maps.params,
                "color_by": color_by}, "seeds": {"projection": maps.params["seed"], "subsample": 0},
                "points_drawn": len(drawn), "checkpoints": list(found.steps)}
    return BuiltFigure(fig, table, analysis, caption, f"checkpoint-map-{layer}", result=maps)
