"""Layer maps: the explorer's (and Compare's) 2-D map of one layer, and the animation through every layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.errors import LayerscopeError
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register, run_keys
from core.runs import check_layer
from core.validation import check_choice, check_int, check_number

MAP_MAX_POINTS = 50_000  # maps draw a seeded subsample above this many inputs
METHOD_AXES = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}
METHOD_OF_AXIS = {axis: method for method, axis in METHOD_AXES.items()}


def aligned_maps(context: Context, acts, method: str) -> list[np.ndarray]:
    """(n_inputs, 2) maps of every layer, aligned across layers (PCA + Procrustes or AlignedUMAP)."""
    from core.analysis.projection import aligned_projection_cached

    def compute() -> list[np.ndarray]:
        return [np.asarray(m) for m in aligned_projection_cached(acts, acts.layer_names, method, context.store)]

    return context.cached(("aligned_maps", acts.key, method), compute)


def layer_maps(context: Context, acts, layer: str, method: str) -> list[np.ndarray]:
    """Every layer's map for `method`; t-SNE is per layer (not aligned), so only `layer` gets it."""
    from core.analysis.projection import projection_cached

    check_choice("method", method, METHOD_AXES)
    if method != "tsne":
        return aligned_maps(context, acts, method)
    maps = list(aligned_maps(context, acts, "pca"))  # the other layers keep their PCA maps (as the explorer)
    maps[acts.layer_names.index(layer)] = context.cached(
        ("tsne", acts.key, layer), lambda: np.asarray(projection_cached(acts, layer, "tsne", context.store))
    )
    return maps


def _labels(acts) -> pd.DataFrame | None:
    return acts.table[acts.label_columns] if acts.label_columns else None


def label_mask(labels: pd.DataFrame, label_filter: Mapping[str, Sequence[Any]] | None = None,
               label_ranges: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
    """(n_inputs,) bool: the inputs every filter keeps.

    labels: (n_inputs, k) a run's label columns (`acts.table[acts.label_columns]`).
    label_filter: {column: values}, keep inputs whose label, as text, is one of the values
        (text as the map's legend writes it, so 1 and "1" are the same label).
    label_ranges: {column: (low, high)}, keep inputs whose numeric label is within [low, high];
        a missing or non-numeric label is left out.
    Filters on several columns all apply (and).
    """
    keep = np.ones(len(labels), bool)
    for column, values in (label_filter or {}).items():
        check_choice("label_filter", column, labels.columns)
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise LayerscopeError(f"label_filter[{column!r}]={values!r} must be a list of label values")
        keep &= np.isin(labels[column].astype(str).to_numpy(), [str(v) for v in values])
    for column, bounds in (label_ranges or {}).items():
        check_choice("label_ranges", column, labels.columns)
        if isinstance(bounds, str) or not isinstance(bounds, Sequence) or len(bounds) != 2:
            raise LayerscopeError(f"label_ranges[{column!r}]={bounds!r} must be a (low, high) pair of numbers")
        low = check_number(f"label_ranges[{column!r}] low", bounds[0])
        high = check_number(f"label_ranges[{column!r}] high", bounds[1], low=low)
        numbers = pd.to_numeric(labels[column], errors="coerce").to_numpy(dtype=float)
        keep &= (numbers >= low) & (numbers <= high)  # NaN compares False: left out
    return keep


def describe_filter(label_filter: Mapping[str, Sequence[Any]] | None = None,
                    label_ranges: Mapping[str, Sequence[float]] | None = None, *, max_values: int = 4) -> str:
    """The filters in words: "topic in {food, sports}; latitude 10 to 40" ("" without filters)."""
    parts = []
    for column, values in (label_filter or {}).items():
        shown = [str(v) for v in values][:max_values]
        more = len(values) - len(shown)
        parts.append(f"{column} in {{{', '.join(shown)}{f', +{more} more' if more > 0 else ''}}}")
    for column, (low, high) in (label_ranges or {}).items():
        parts.append(f"{column} {_number(low)} to {_number(high)}")
    return "; ".join(parts)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1000 else f"{value:.4g}"


def drawn_rows(acts, *, max_points: int | None = MAP_MAX_POINTS, label_filter: Mapping[str, Sequence[Any]] | None = None,
               label_ranges: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
    """The input rows a map draws: a seeded subsample above `max_points`, then those the filters keep."""
    from core.analysis.projection import subsample_indices

    rows = subsample_indices(acts.n_inputs, max_points=max_points, seed=0) if max_points else np.arange(acts.n_inputs)
    rows = np.asarray(rows, dtype=int)
    if label_filter or label_ranges:
        rows = rows[label_mask(acts.table[list(acts.label_columns)], label_filter, label_ranges)[rows]]
        if not len(rows):
            raise LayerscopeError(f"the filter ({describe_filter(label_filter, label_ranges)}) keeps no input of "
                                  f"{acts.n_inputs:,}: choose other values")
    return rows


def _map_analysis(acts, method: str, rows: np.ndarray, **params: Any) -> dict[str, Any]:
    """Provenance of a map: the projection, its options, the seeds, how many inputs are drawn and why."""
    variant = {"pca": "PCA, aligned across layers (Procrustes)", "umap": "AlignedUMAP across layers",
               "tsne": "t-SNE of this layer (not aligned)"}[method]
    return {
        "metric": f"{METHOD_AXES[method]} projection",
        "variant": variant,
        "parameters": {"method": method, "n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean", **params},
        "seeds": {"projection": 0, "subsample": 0},
        "points_drawn": len(rows),
        "n_inputs": acts.n_inputs,
    }


def _neighbours(context: Context, acts, layer: str, row: int, k: int) -> np.ndarray:
    from core.analysis.projection import nearest_neighbors

    def compute() -> np.ndarray:
        indices, _ = nearest_neighbors(np.asarray(acts.pooled(layer)), row, k=k, metric="cosine")
        return np.asarray(indices)

    return context.cached(("neighbours", acts.key, layer, row, k), compute)


def _filter_params(label_filter, label_ranges) -> dict[str, Any]:
    """The filters as the analysis records them (absent when there are none)."""
    params: dict[str, Any] = {}
    if label_filter:
        params["label_filter"] = {column: [str(v) for v in values] for column, values in label_filter.items()}
    if label_ranges:
        params["label_ranges"] = {column: [float(v) for v in bounds] for column, bounds in label_ranges.items()}
    return params


def _drawn_caption(acts, rows: np.ndarray, label_filter, label_ranges) -> str:
    """"212 of 864 inputs (topic in {food})": how many inputs the map draws and which filters chose them."""
    described = describe_filter(label_filter, label_ranges)
    return f"{len(rows):,} of {acts.n_inputs:,} inputs" + (f" ({described})" if described else "")


@register("layer_map", page="views/explorer.py")
def layer_map_recipe(context: Context, runs, *, layer: str, method: str = "pca", color_by: str | None = None,
                     title: str | None = None, search: str = "", highlight_rows: Sequence[int] | None = None,
                     selected: int | None = None, k: int = 10, max_points: int | None = MAP_MAX_POINTS,
                     layout: Mapping[str, Any] | None = None, label_filter: Mapping[str, Sequence[Any]] | None = None,
                     label_ranges: Mapping[str, Sequence[float]] | None = None,
                     region_rows: Sequence[int] | None = None) -> BuiltFigure:
    """The explorer's (or Compare's) 2-D map of one layer, with search matches, a selection and its neighbours.

    label_filter / label_ranges: draw only the inputs the filters keep (see `label_mask`).
    region_rows: inputs picked by a box or lasso on the map, outlined (those drawn).
    """
    from core.figures.maps import layer_map, shared_ranges

    acts = context.run(run_keys(runs, "layer_map")[0])
    check_layer(acts, layer)
    maps = layer_maps(context, acts, layer, method)
    drawn = drawn_rows(acts, max_points=max_points, label_filter=label_filter, label_ranges=label_ranges)
    kept = np.zeros(acts.n_inputs, bool)
    kept[drawn] = True
    texts = acts.texts
    highlight = None
    if search:
        highlight = np.array([search.lower() in t.lower() for t in texts])
    elif highlight_rows:
        highlight = np.zeros(acts.n_inputs, bool)
        highlight[np.asarray(highlight_rows, int)] = True
    if highlight is not None and (label_filter or label_ranges):
        highlight &= kept  # a filtered-out input is not drawn, outlined or counted
    region = None
    if region_rows:
        region = np.asarray(sorted({int(r) for r in region_rows if 0 <= int(r) < acts.n_inputs}), dtype=int)
        region = region[kept[region]]
    neighbours = None
    if selected is not None and selected < acts.n_inputs:
        neighbours = _neighbours(context, acts, layer, int(selected), check_int("k", k, low=1))
    axis = METHOD_AXES[method]
    title = title or f"{acts.model_name} · {layer} · {axis} map of {acts.dataset_name}"
    filtered = bool(label_filter or label_ranges)
    coords = maps[acts.layer_names.index(layer)]
    fig = layer_map(
        coords, texts=texts, labels=_labels(acts), color_by=color_by, rows=drawn, highlight=highlight,
        selected=selected, neighbours=neighbours, region=region, title=title, axis_name=axis,
        subtitle=f"Showing {_drawn_caption(acts, drawn, label_filter, label_ranges)}" if filtered else None,
        ranges=shared_ranges(maps),
    )
    if layout:
        fig.update_layout(**layout)
    table = pd.DataFrame({"row": drawn, "text": [texts[i] for i in drawn], "x": coords[drawn, 0],
                          "y": coords[drawn, 1]})
    for column in acts.label_columns:
        table[column] = acts.table[column].to_numpy()[drawn]
    caption = (f"{axis} map of layer {layer} of {acts.model_name} on {acts.dataset_name}"
               + (f", coloured by {color_by}" if color_by else "")
               + f"; {_drawn_caption(acts, drawn, label_filter, label_ranges)}.")
    analysis = _map_analysis(acts, method, drawn, layer=layer, color_by=color_by,
                             **_filter_params(label_filter, label_ranges))
    return BuiltFigure(fig, table, analysis, caption, f"map-{acts.model_name}-{layer}", result=maps)


@register("animated_layer_map", page="views/explorer.py")
def animated_map_recipe(context: Context, runs, *, method: str = "pca", color_by: str | None = None,
                        title: str | None = None, max_points: int | None = MAP_MAX_POINTS,
                        layer: str | None = None, label_filter: Mapping[str, Sequence[Any]] | None = None,
                        label_ranges: Mapping[str, Sequence[float]] | None = None) -> BuiltFigure:
    """The explorer's animation through every layer (aligned maps, fixed axes).

    layer: with method="tsne", the layer whose t-SNE map the animation shows (the others
    show PCA, as the explorer does); without it every layer shows PCA.
    label_filter / label_ranges: animate only the inputs the filters keep (see `label_mask`).
    """
    from core.figures.maps import animated_layer_map

    acts = context.run(run_keys(runs, "animated_layer_map")[0])
    check_choice("method", method, METHOD_AXES)
    if method == "tsne" and layer is not None:
        maps = layer_maps(context, acts, check_layer(acts, layer), method)
    else:
        maps = aligned_maps(context, acts, method if method != "tsne" else "pca")
    drawn = drawn_rows(acts, max_points=max_points, label_filter=label_filter, label_ranges=label_ranges)
    axis = METHOD_AXES[method]
    title = title or f"{acts.model_name} · {axis} maps across layers"
    fig = animated_layer_map(maps, acts.layer_names, texts=acts.texts, labels=_labels(acts), color_by=color_by,
                             rows=drawn, title=title, axis_name=axis)
    if label_filter or label_ranges:
        fig.update_layout(title_subtitle_text=f"Showing {_drawn_caption(acts, drawn, label_filter, label_ranges)}",
                          margin_t=max(fig.layout.margin.t or 0, 110))
    table = pd.concat(
        [pd.DataFrame({"layer": name, "row": drawn, "x": m[drawn, 0], "y": m[drawn, 1]})
         for name, m in zip(acts.layer_names, maps)], ignore_index=True)
    caption = (f"Aligned {axis} maps of every layer of {acts.model_name} on {acts.dataset_name} (animated in HTML); "
               f"{_drawn_caption(acts, drawn, label_filter, label_ranges)}.")
    analysis = _map_analysis(acts, method, drawn, color_by=color_by, **_filter_params(label_filter, label_ranges))
    return BuiltFigure(fig, table, analysis, caption, f"maps-animated-{acts.model_name}", result=maps)
