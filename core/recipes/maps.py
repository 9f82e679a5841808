"""Layer maps: the explorer's (and Compare's) 2-D map of one layer, and the animation through every layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register, run_keys
from core.runs import check_layer
from core.validation import check_choice, check_int

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


def _drawn_rows(n_inputs: int, max_points: int | None) -> np.ndarray | None:
    from core.analysis.projection import subsample_indices

    return subsample_indices(n_inputs, max_points=max_points, seed=0) if max_points else None


def _map_analysis(acts, method: str, rows: np.ndarray, **params: Any) -> dict[str, Any]:
    variant = {"pca": "PCA, aligned across layers (Procrustes)", "umap": "AlignedUMAP across layers",
               "tsne": "t-SNE of this layer (not aligned)"}[method]
    return {
        "metric": f"{METHOD_AXES[method]} projection",
        "variant": variant,
        "parameters": {"method": method, "n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean", **params},
        "seeds": {"projection": 0, "subsample": 0},
        "points_drawn": int(len(rows)),
        "n_inputs": acts.n_inputs,
    }


def _neighbours(context: Context, acts, layer: str, row: int, k: int) -> np.ndarray:
    from core.analysis.projection import nearest_neighbors

    def compute() -> np.ndarray:
        indices, _ = nearest_neighbors(np.asarray(acts.pooled(layer)), row, k=k, metric="cosine")
        return np.asarray(indices)

    return context.cached(("neighbours", acts.key, layer, row, k), compute)


@register("layer_map", page="views/explorer.py")
def layer_map_recipe(context: Context, runs, *, layer: str, method: str = "pca", color_by: str | None = None,
                     title: str | None = None, search: str = "", highlight_rows: Sequence[int] | None = None,
                     selected: int | None = None, k: int = 10, max_points: int | None = MAP_MAX_POINTS,
                     layout: Mapping[str, Any] | None = None) -> BuiltFigure:
    """The explorer's (or Compare's) 2-D map of one layer, with search matches, a selection and its neighbours."""
    from core.figures.maps import layer_map, shared_ranges

    acts = context.run(run_keys(runs, "layer_map")[0])
    check_layer(acts, layer)
    maps = layer_maps(context, acts, layer, method)
    rows = _drawn_rows(acts.n_inputs, max_points)
    texts = acts.texts
    highlight = None
    if search:
        highlight = np.array([search.lower() in t.lower() for t in texts])
    elif highlight_rows:
        highlight = np.zeros(acts.n_inputs, bool)
        highlight[np.asarray(highlight_rows, int)] = True
    neighbours = None
    if selected is not None and selected < acts.n_inputs:
        neighbours = _neighbours(context, acts, layer, int(selected), check_int("k", k, low=1))
    axis = METHOD_AXES[method]
    title = title or f"{acts.model_name} · {layer} · {axis} map of {acts.dataset_name}"
    coords = maps[acts.layer_names.index(layer)]
    fig = layer_map(
        coords, texts=texts, labels=_labels(acts), color_by=color_by, rows=rows, highlight=highlight,
        selected=selected, neighbours=neighbours, title=title, axis_name=axis, ranges=shared_ranges(maps),
    )
    if layout:
        fig.update_layout(**layout)
    drawn = np.arange(acts.n_inputs) if rows is None else np.asarray(rows)
    table = pd.DataFrame({"row": drawn, "text": [texts[i] for i in drawn], "x": coords[drawn, 0],
                          "y": coords[drawn, 1]})
    for column in acts.label_columns:
        table[column] = acts.table[column].to_numpy()[drawn]
    caption = (f"{axis} map of layer {layer} of {acts.model_name} on {acts.dataset_name}"
               + (f", coloured by {color_by}" if color_by else "") + f"; {len(drawn):,} of {acts.n_inputs:,} inputs.")
    return BuiltFigure(fig, table, _map_analysis(acts, method, drawn, layer=layer, color_by=color_by), caption,
                       f"map-{acts.model_name}-{layer}", result=maps)


@register("animated_layer_map", page="views/explorer.py")
def animated_map_recipe(context: Context, runs, *, method: str = "pca", color_by: str | None = None,
                        title: str | None = None, max_points: int | None = MAP_MAX_POINTS,
                        layer: str | None = None) -> BuiltFigure:
    """The explorer's animation through every layer (aligned maps, fixed axes).

    layer: with method="tsne", the layer whose t-SNE map the animation shows (the others
    show PCA, as the explorer does); without it every layer shows PCA.
    """
    from core.figures.maps import animated_layer_map

    acts = context.run(run_keys(runs, "animated_layer_map")[0])
    check_choice("method", method, METHOD_AXES)
    if method == "tsne" and layer is not None:
        maps = layer_maps(context, acts, check_layer(acts, layer), method)
    else:
        maps = aligned_maps(context, acts, method if method != "tsne" else "pca")
    rows = _drawn_rows(acts.n_inputs, max_points)
    axis = METHOD_AXES[method]
    title = title or f"{acts.model_name} · {axis} maps across layers"
    fig = animated_layer_map(maps, acts.layer_names, texts=acts.texts, labels=_labels(acts), color_by=color_by,
                             rows=rows, title=title, axis_name=axis)
    drawn = np.arange(acts.n_inputs) if rows is None else np.asarray(rows)
    table = pd.concat(
        [pd.DataFrame({"layer": name, "row": drawn, "x": m[drawn, 0], "y": m[drawn, 1]})
         for name, m in zip(acts.layer_names, maps)], ignore_index=True)
    caption = f"Aligned {axis} maps of every layer of {acts.model_name} on {acts.dataset_name} (animated in HTML)."
    return BuiltFigure(fig, table, _map_analysis(acts, method, drawn, color_by=color_by), caption,
                       f"maps-animated-{acts.model_name}", result=maps)
