"""Figures rebuilt from the store, report bundles, and regeneration from sidecars.

Each figure the dashboard draws has a *recipe* here, registered by name in
core.export.FIGURES: recipe(context, runs, **params) computes through the store (a stored
result is read back, a missing one computed and stored) and calls the same
core.figures function with the same arguments as the page, so a figure rebuilt from a
sidecar has the same data as the one exported.

    report = write_report(store, [run_key], "report/")   # folder + report.zip, atomically
    regenerate("report/figures/03-probe-topic.json", store)
"""

from __future__ import annotations

import html
import inspect
import json
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.activations import display_tokens
from core.errors import LayerscopeError
from core.export import (
    FIGURES,
    IMAGE_FORMATS,
    BuiltFigure,
    build_figure,
    data_fingerprint,
    ensure_writable_dir,
    export_figure,
    figure_spec,
    figure_table,
    images_unavailable_reason,
    read_sidecar,
    register,
    run_provenance,
    slug,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
MAP_MAX_POINTS = 50_000  # the explorer draws a seeded subsample above this (dashboard.analysis.MAX_POINTS)
METHOD_AXES = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}
GEOMETRY_OPTIONS = {"curvature_variant": "signed", "id_method": "twonn", "entropy_alpha": 1.0}  # the page's defaults
REPORT_GEOMETRY = ("curvature", "intrinsic_dimension")  # the Geometry page's default metrics


class Context:
    """What recipes share: the store, a model loader, and runs opened once."""

    def __init__(self, store, *, load_model: Callable[[str], Any] | None = None) -> None:
        self.store = store
        self._load_model = load_model
        self._runs: dict[str, Any] = {}

    def run(self, key: str):
        if key not in self._runs:
            self._runs[key] = self.store.open_run(key)
        return self._runs[key]

    def model(self, name: str):
        if self._load_model is not None:
            return self._load_model(name)
        import core

        return core.load_model(name, workspace=self.store.root)


def _one(runs: Sequence[str], kind: str, count: int = 1) -> list[str]:
    if len(runs) != count:
        raise LayerscopeError(f"figure {kind!r} needs {count} run key(s); got {len(runs)}")
    return list(runs)


def _labels(acts) -> pd.DataFrame | None:
    return acts.table[acts.label_columns] if acts.label_columns else None


# ----- recipes: one per figure the dashboard draws ------------------------------------------------
def _maps(context: Context, acts, layer: str, method: str) -> list[np.ndarray]:
    from core.analysis.projection import aligned_projection_cached, projection_cached

    if method not in METHOD_AXES:
        raise LayerscopeError(f"method={method!r} must be one of {', '.join(METHOD_AXES)}")
    if method == "tsne":  # per layer, not aligned: the other layers keep their PCA maps (as the explorer)
        maps = [np.asarray(m) for m in aligned_projection_cached(acts, acts.layer_names, "pca", context.store)]
        maps[acts.layer_names.index(layer)] = np.asarray(projection_cached(acts, layer, "tsne", context.store))
        return maps
    return [np.asarray(m) for m in aligned_projection_cached(acts, acts.layer_names, method, context.store)]


def _map_analysis(acts, method: str, rows: np.ndarray, **params) -> dict[str, Any]:
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


@register("layer_map")
def layer_map_recipe(context: Context, runs, *, layer: str, method: str = "pca", color_by: str | None = None,
                     title: str | None = None, search: str = "", highlight_rows: Sequence[int] | None = None,
                     selected: int | None = None, k: int = 10, max_points: int | None = MAP_MAX_POINTS,
                     layout: Mapping[str, Any] | None = None) -> BuiltFigure:
    """The explorer's (or Compare's) 2-D map of one layer."""
    from core.analysis.projection import nearest_neighbors, subsample_indices
    from core.figures.maps import layer_map, shared_ranges

    acts = context.run(_one(runs, "layer_map")[0])
    if layer not in acts.layer_names:
        raise LayerscopeError(f"layer {layer!r} is not in run {acts.key}; it has {', '.join(acts.layer_names)}")
    maps = _maps(context, acts, layer, method)
    rows = subsample_indices(acts.n_inputs, max_points=max_points, seed=0) if max_points else None
    texts = acts.texts
    highlight = None
    if search:
        highlight = np.array([search.lower() in t.lower() for t in texts])
    elif highlight_rows:
        highlight = np.zeros(acts.n_inputs, bool)
        highlight[np.asarray(highlight_rows, int)] = True
    neighbours = None
    if selected is not None and selected < acts.n_inputs:
        neighbours, _ = nearest_neighbors(np.asarray(acts.pooled(layer)), int(selected), k=int(k), metric="cosine")
        neighbours = np.asarray(neighbours)
    axis = METHOD_AXES[method]
    title = title or f"{acts.model_name} · {layer} · {axis} map of {acts.dataset_name}"
    fig = layer_map(
        maps[acts.layer_names.index(layer)], texts=texts, labels=_labels(acts), color_by=color_by, rows=rows,
        highlight=highlight, selected=selected, neighbours=neighbours, title=title, axis_name=axis,
        ranges=shared_ranges(maps),
    )
    if layout:
        fig.update_layout(**layout)
    drawn = np.arange(acts.n_inputs) if rows is None else np.asarray(rows)
    coords = maps[acts.layer_names.index(layer)]
    table = pd.DataFrame(
        {"row": drawn, "text": [texts[i] for i in drawn], "x": coords[drawn, 0], "y": coords[drawn, 1]}
    )
    for column in acts.label_columns:
        table[column] = acts.table[column].to_numpy()[drawn]
    caption = (f"{axis} map of layer {layer} of {acts.model_name} on {acts.dataset_name}"
               + (f", coloured by {color_by}" if color_by else "") + f"; {len(drawn):,} of {acts.n_inputs:,} inputs.")
    return BuiltFigure(fig, table, _map_analysis(acts, method, drawn, layer=layer, color_by=color_by), caption,
                       f"map-{acts.model_name}-{layer}")


@register("animated_layer_map")
def animated_map_recipe(context: Context, runs, *, method: str = "pca", color_by: str | None = None,
                        title: str | None = None, max_points: int | None = MAP_MAX_POINTS) -> BuiltFigure:
    """The explorer's animation through every layer (aligned maps, fixed axes)."""
    from core.analysis.projection import subsample_indices
    from core.figures.maps import animated_layer_map

    acts = context.run(_one(runs, "animated_layer_map")[0])
    maps = _maps(context, acts, acts.layer_names[0], method if method != "tsne" else "pca")
    rows = subsample_indices(acts.n_inputs, max_points=max_points, seed=0) if max_points else None
    axis = METHOD_AXES[method]
    title = title or f"{acts.model_name} · {axis} maps across layers"
    fig = animated_layer_map(maps, acts.layer_names, texts=acts.texts, labels=_labels(acts), color_by=color_by,
                             rows=rows, title=title, axis_name=axis)
    drawn = np.arange(acts.n_inputs) if rows is None else np.asarray(rows)
    table = pd.concat(
        [pd.DataFrame({"layer": layer, "row": drawn, "x": m[drawn, 0], "y": m[drawn, 1]})
         for layer, m in zip(acts.layer_names, maps)], ignore_index=True)
    caption = f"Aligned {axis} maps of every layer of {acts.model_name} on {acts.dataset_name} (animated in HTML)."
    return BuiltFigure(fig, table, _map_analysis(acts, method, drawn, color_by=color_by), caption,
                       f"maps-animated-{acts.model_name}")


def _probe(context: Context, acts, column: str, task: str, dropna: bool):
    from core.analysis.probes import probe_by_layer_cached

    return probe_by_layer_cached(acts, column, context.store, task=task, dropna=dropna)


def _probe_analysis(result) -> dict[str, Any]:
    p = result.params
    estimator = (f"multinomial logistic regression (L2, C={p.get('C', 1.0):g})" if result.metric == "accuracy"
                 else "ridge regression (alpha chosen on each training split)")
    return {"metric": result.metric, "variant": f"{estimator}, {p.get('n_folds', 5)}-fold CV, shuffled-label control",
            "parameters": p, "seeds": {"folds_and_control": p.get("seed", 0)}, "n": result.n,
            "n_dropped": result.n_dropped, "chance": result.chance}


@register("probe_curve")
def probe_curve_recipe(context: Context, runs, *, column: str, task: str = "auto", dropna: bool = True,
                       title: str | None = None) -> BuiltFigure:
    """The Probes page's curve: held-out score per layer with control and chance."""
    from core.figures.probes import probe_curve

    acts = context.run(_one(runs, "probe_curve")[0])
    result = _probe(context, acts, column, task, dropna)
    fig = probe_curve(result, title=title or f"{acts.model_name} on {acts.dataset_name}: probing {column}")
    score = "accuracy" if result.metric == "accuracy" else "R²"
    caption = (f"Linear probe {score} for {column} at each layer of {acts.model_name} on {acts.dataset_name} "
               f"(mean ± std over folds), with the shuffled-label control and chance; best layer {result.best_layer}.")
    return BuiltFigure(fig, result.to_frame(), _probe_analysis(result), caption, f"probe-{acts.model_name}-{column}")


@register("probe_depth_curves")
def probe_depth_recipe(context: Context, runs, *, column: str, names: Sequence[str] | None = None,
                       title: str | None = None, y_title: str | None = None) -> BuiltFigure:
    """Compare's probe curves of several runs on one relative-depth axis."""
    from core.figures.similarity import relative_depth_curves

    if not runs:
        raise LayerscopeError("figure 'probe_depth_curves' needs at least one run key")
    names = list(names) if names else [context.run(k).model_name for k in runs]
    curves, results = {}, []
    for key, name in zip(runs, names):
        result = _probe(context, context.run(key), column, "auto", True)
        curves[name] = (list(result.layer_names), np.asarray(result.mean))
        results.append(result)
    score = "accuracy" if results[-1].metric == "accuracy" else "R²"
    fig = relative_depth_curves(curves, y_title=y_title or f"held-out probe {score}",
                                title=title or f"Linear probe {score} for {column}, both models")
    table = pd.concat([r.to_frame().assign(run=name) for name, r in zip(names, results)], ignore_index=True)
    caption = f"Linear probe {score} for {column} on a relative-depth axis: {', '.join(names)}."
    return BuiltFigure(fig, table, {**_probe_analysis(results[0]), "runs": list(names)}, caption,
                       f"probe-depth-{column}")


@register("similarity_heatmap")
def similarity_recipe(context: Context, runs, *, metric: str = "linear_cka",
                      metric_params: Mapping[str, Any] | None = None, title: str | None = None,
                      fit_colours: bool = False) -> BuiltFigure:
    """Compare's layer x layer similarity heatmap of two runs."""
    from core.analysis.similarity import similarity_matrix
    from core.figures.similarity import similarity_heatmap

    key_a, key_b = _one(runs, "similarity_heatmap", 2)
    acts_a, acts_b = context.run(key_a), context.run(key_b)
    result = similarity_matrix(acts_a, acts_b, metric, store=context.store, **dict(metric_params or {}))
    title = title or f"{result.label}: {acts_a.model_name} vs {acts_b.model_name} on {acts_a.dataset_name}"
    fig = similarity_heatmap(result, title=title, fit_colours=fit_colours)
    analysis = {"metric": result.metric, "variant": result.label, "parameters": result.params,
                "seeds": {"subsample": result.seed}, "n": result.n, "max_points": result.max_points}
    caption = (f"{result.label} between every layer of {acts_a.model_name} (A) and {acts_b.model_name} (B), "
               f"{result.n} inputs.")
    return BuiltFigure(fig, result.to_frame(), analysis, caption, f"similarity-{result.metric}")


@register("geometry_curves")
def geometry_recipe(context: Context, runs, *, curves: Sequence[Mapping[str, Any]], metric: str,
                    relative_depth: bool = True, controls: Sequence[str] = (), title: str | None = None) -> BuiltFigure:
    """The Geometry page's curve of one metric against depth, one line per (run, variant).

    curves: [{"name": legend name, "run": key, "metrics": metrics computed together, "options": {...}}].
    """
    from core.analysis.geometry import geometry_by_layer
    from core.figures.geometry import METRIC_TITLES, geometry_curves, in_display_units, metric_variant

    if not curves:
        raise LayerscopeError("figure 'geometry_curves' needs at least one curve")
    results = {}
    for curve in curves:
        acts = context.run(curve["run"])
        results[curve["name"]] = geometry_by_layer(acts, tuple(curve["metrics"]), store=context.store,
                                                   **dict(curve.get("options") or {}))
    first = context.run(curves[0]["run"])
    fig = geometry_curves(results, metric, relative_depth=relative_depth, controls=set(controls),
                          title=title or f"{METRIC_TITLES.get(metric, metric)} by layer · {first.dataset_name}")
    table = pd.concat(
        [pd.DataFrame({"run": name, "layer": list(r.layer_names), "value": in_display_units(metric, r.mean[metric]),
                       "q25": in_display_units(metric, r.q25[metric]), "q75": in_display_units(metric, r.q75[metric]),
                       "inputs left out": r.n_skipped[metric]}) for name, r in results.items()],
        ignore_index=True)
    analysis = {"metric": metric, "variant": {n: metric_variant(r, metric) for n, r in results.items()},
                "parameters": {n: r.params for n, r in results.items()},
                "seeds": {n: r.params.get("seed") for n, r in results.items()},
                "reasons": {n: r.reasons.get(metric) for n, r in results.items() if r.reasons.get(metric)}}
    caption = f"{METRIC_TITLES.get(metric, metric)} against depth for {', '.join(results)}."
    return BuiltFigure(fig, table, analysis, caption, f"geometry-{metric}")


@register("trajectory")
def trajectory_recipe(context: Context, runs, *, layer: str, index: int, variant: str = "signed",
                      skip_first: bool = False, title: str | None = None) -> BuiltFigure:
    """The Trajectory page's path of one input's tokens at one layer."""
    from core.figures.geometry import trajectory_figure

    acts = context.run(_one(runs, "trajectory")[0])
    vectors = acts.input_tokens(layer, int(index)).astype(np.float64)
    tokens = display_tokens(acts.tokens[acts.input_rows(int(index))])
    fig = trajectory_figure(vectors, tokens, layer=layer, variant=variant, skip_first=skip_first,
                            title=title or f"{acts.model_name} · input {index} at {layer}")
    analysis = {"metric": "curvature (turning angle)", "variant": variant, "parameters": {"layer": layer,
                "index": int(index), "skip_first": skip_first}, "seeds": {}}
    caption = f"Token trajectory of input {index} at {layer} ({acts.model_name}), in the PCA plane of its own tokens."
    return BuiltFigure(fig, figure_table(fig), analysis, caption, f"trajectory-input{index}-{layer}")


@register("curvature_by_layer")
def curvature_recipe(context: Context, runs, *, index: int, variant: str = "signed", reference: bool = False,
                     input_label: str | None = None, title: str | None = None) -> BuiltFigure:
    """The Trajectory page's curvature of one input at each layer (with the dataset band)."""
    from core.analysis.geometry import curvature, geometry_by_layer
    from core.figures.geometry import curvature_by_layer_figure

    acts = context.run(_one(runs, "curvature_by_layer")[0])
    per_layer = np.array(
        [curvature(acts.input_tokens(layer, int(index)), variant=variant) for layer in acts.layer_names]
    )
    ref = geometry_by_layer(acts, ("curvature",), store=context.store, curvature_variant=variant) if reference else None
    fig = curvature_by_layer_figure(acts.layer_names, per_layer, input_label=input_label or f"input {index}",
                                    reference=ref, title=title or f"Curvature of input {index} by layer")
    table = pd.DataFrame({"layer": acts.layer_names, "curvature_degrees": np.degrees(per_layer)})
    if ref is not None:
        table["all_inputs_mean_degrees"] = np.degrees(ref.mean["curvature"])
    analysis = {"metric": "curvature", "variant": variant, "parameters": {"index": int(index), "reference": reference,
                **(ref.params if ref is not None else {})}, "seeds": {}}
    caption = f"Curvature of input {index}'s token trajectory at each layer of {acts.model_name} ({variant})."
    return BuiltFigure(fig, table, analysis, caption, f"curvature-input{index}")


def _lens(context: Context, model: str, text: str, top_k: int):
    from core.analysis.lens import logit_lens

    loaded = context.model(model)
    return loaded, logit_lens(loaded, text, top_k=int(top_k))


def _lens_analysis(loaded, result) -> dict[str, Any]:
    return {"metric": "KL(p_final || p_layer) (nats)", "variant": "logit lens (final norm + unembedding)",
            "parameters": {**result.params, "text": result.text}, "model": loaded.identity(), "seeds": {}}


@register("lens_heatmap")
def lens_heatmap_recipe(context: Context, runs, *, model: str, text: str, top_k: int = 5,
                        positions: Sequence[int] | None = None, title: str | None = None) -> BuiltFigure:
    """The Logit lens page's heatmap of top next tokens per layer and position."""
    from core.figures.geometry import lens_heatmap

    loaded, result = _lens(context, model, text, top_k)
    fig = lens_heatmap(result, positions=tuple(positions) if positions else None, title=title)
    caption = f"Logit lens of {model}: each layer's top next token at each position, coloured by its probability."
    return BuiltFigure(fig, figure_table(fig), _lens_analysis(loaded, result), caption, f"lens-{model}")


@register("kl_curve")
def kl_curve_recipe(context: Context, runs, *, model: str, text: str, top_k: int = 5,
                    title: str | None = None) -> BuiltFigure:
    """The Logit lens page's KL-to-final curve."""
    from core.figures.geometry import kl_curve

    loaded, result = _lens(context, model, text, top_k)
    fig = kl_curve(result, title=title)
    table = pd.DataFrame({"layer": list(result.layer_names), "mean_kl_nats": result.mean_kl})
    caption = (f"Logit lens of {model}: KL divergence of each layer's readout to the model's output, "
               "mean over positions.")
    return BuiltFigure(fig, table, _lens_analysis(loaded, result), caption, f"lens-kl-{model}")


def check_params(spec: Mapping[str, Any]) -> None:
    """LayerscopeError when a spec's params do not fit its recipe (e.g. a hand-edited sidecar)."""
    recipe = FIGURES.get(spec.get("figure"))
    if recipe is None:
        return
    try:
        inspect.signature(recipe).bind(None, [], **dict(spec.get("params") or {}))
    except TypeError as err:
        raise LayerscopeError(f"figure {spec.get('figure')!r}: {err}") from None


# ----- what a report holds ------------------------------------------------------------------------
def _spread(items: Sequence[str], count: int) -> list[str]:
    """At most `count` items, evenly spaced, first and last included."""
    if len(items) <= count:
        return list(items)
    picks = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
    return [items[i] for i in picks]


def _is_untrained(meta: Mapping[str, Any]) -> bool:
    return str(meta["model"].get("weights", "")).startswith("reinit")


def _legend_names(runs: Sequence[Any]) -> list[str]:
    """Model names, made distinct with dataset/pooling when two runs share a model (as the Geometry page)."""
    names = [acts.model_name for acts in runs]
    for i, acts in enumerate(runs):
        if names.count(acts.model_name) > 1:
            others = [r for r in runs if r.model_name == acts.model_name]
            same_data = len({r.dataset_name for r in others}) == 1
            names[i] = f"{acts.model_name} · {acts.pooling if same_data else acts.dataset_name}"
    return names


def plan_report(
    store,
    run_keys: Sequence[str],
    *,
    geometry_metrics: Sequence[str] = REPORT_GEOMETRY,
    max_maps: int = 8,
    lens_text: str | None = None,
) -> list[dict[str, Any]]:
    """Specs of every figure the dashboard's pages draw for these runs.

    Per run: the explorer's PCA map of up to `max_maps` layers (evenly spaced) and its
    animation, a probe curve per label column, and for tokens runs one input's trajectory
    and curvature by layer; for causal LMs the logit lens of `lens_text` (default the first
    input). Across runs: geometry curves of `geometry_metrics` (the Geometry page's
    defaults; per-token metrics only when a run has pooling="tokens"); for the first two
    runs of different models on the same inputs, the CKA heatmap and probe curves on
    relative depth. Probes need one vector per input, so tokens runs get none.
    """
    from core.analysis.geometry import PER_INPUT_METRICS, RESULT_METRICS
    from core.analysis.similarity import metric_label
    from core.figures.geometry import METRIC_TITLES

    if not run_keys:
        raise LayerscopeError("no runs to report; give at least one run key (see `python -m core ls`)")
    runs = [store.open_run(key) for key in dict.fromkeys(run_keys)]
    specs: list[dict[str, Any]] = []
    for acts in runs:
        color_by = acts.label_columns[0] if acts.label_columns else None
        for layer in _spread(acts.layer_names, max_maps):
            specs.append(figure_spec("layer_map", [acts.key], layer=layer, method="pca", color_by=color_by,
                                     title=f"{acts.model_name} · {layer} · PC map of {acts.dataset_name}"))
        if len(acts.layer_names) > 1:
            specs.append(figure_spec("animated_layer_map", [acts.key], method="pca", color_by=color_by,
                                     title=f"{acts.model_name} · PC maps across layers"))
        for column in acts.label_columns if not acts.is_tokens else ():  # probes read one vector per input
            specs.append(figure_spec("probe_curve", [acts.key], column=column,
                                     title=f"{acts.model_name} on {acts.dataset_name}: probing {column}"))
        if acts.is_tokens:
            long_enough = np.flatnonzero(acts.lengths >= 3)
            index = int(long_enough[0]) if long_enough.size else 0
            layer = acts.layer_names[len(acts.layer_names) // 2]
            specs.append(figure_spec("trajectory", [acts.key], layer=layer, index=index, variant="signed",
                                     skip_first=bool(acts.meta["model"].get("is_causal_lm")),
                                     title=f"{acts.model_name} · input {index} at {layer}"))
            specs.append(figure_spec("curvature_by_layer", [acts.key], index=index, variant="signed", reference=True,
                                     input_label=f"input {index}", title=f"Curvature of input {index} by layer"))
        if acts.meta["model"].get("is_causal_lm") and not _is_untrained(acts.meta):
            text = lens_text or (acts.texts[0] if acts.n_inputs else "")
            specs.append(figure_spec("lens_heatmap", [], model=acts.model_name, text=text, top_k=5))
            specs.append(figure_spec("kl_curve", [], model=acts.model_name, text=text, top_k=5))
    any_tokens = any(acts.is_tokens for acts in runs)
    metrics = [m for m in geometry_metrics if m in RESULT_METRICS and (any_tokens or m not in PER_INPUT_METRICS)]
    if metrics:
        names = _legend_names(runs)
        curves = [{"name": name, "run": acts.key, "metrics": list(geometry_metrics), "options": GEOMETRY_OPTIONS}
                  for name, acts in zip(names, runs)]
        controls = [name for name, acts in zip(names, runs) if _is_untrained(acts.meta)]
        for metric in metrics:
            for name in RESULT_METRICS[metric]:
                specs.append(figure_spec("geometry_curves", [a.key for a in runs], curves=curves, metric=name,
                                         relative_depth=True, controls=controls,
                                         title=f"{METRIC_TITLES.get(name, name)} by layer · {runs[0].dataset_name}"))
    pair = next(((a, b) for i, a in enumerate(runs) for b in runs[i + 1:]
                 if a.meta["dataset"]["fingerprint"] == b.meta["dataset"]["fingerprint"] and a.n_inputs == b.n_inputs
                 and a.meta["model"]["weights"] != b.meta["model"]["weights"]), None)
    if pair is not None:
        a, b = pair
        specs.append(figure_spec("similarity_heatmap", [a.key, b.key], metric="linear_cka", metric_params={},
                                 title=f"{metric_label('linear_cka', {})}: {a.model_name} vs {b.model_name} "
                                       f"on {a.dataset_name}"))
        if a.label_columns and not (a.is_tokens or b.is_tokens):
            specs.append(figure_spec("probe_depth_curves", [a.key, b.key], column=a.label_columns[0],
                                     names=[f"A: {a.model_name}", f"B: {b.model_name}"]))
    return specs


# ----- writing a report ---------------------------------------------------------------------------
@dataclass
class ReportResult:
    """A written report: its folder, zip, figures (sidecars) and what could not be drawn."""

    path: Path
    zip_path: Path | None
    figures: list[dict[str, Any]]  # sidecars, in index order
    not_drawn: list[dict[str, Any]]  # {"figure", "title", "reason"}
    seconds: float
    notes: list[str] = field(default_factory=list)


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LayerscopeError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise LayerscopeError(
            f"{out} exists and is not a Layerscope report (no report.json); choose a new folder so nothing "
            "of yours is overwritten"
        )
    ensure_writable_dir(out.parent)


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an older report there is replaced only once the new one is complete."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _zip_folder(folder: Path, target: Path, arcroot: str) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stored = path.suffix in (".png", ".parquet")  # already compressed
                archive.write(path, f"{arcroot}/{path.relative_to(folder)}",
                              compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


def write_report(
    store,
    run_keys: Sequence[str],
    out: str | os.PathLike,
    *,
    publication: bool = True,
    formats: Sequence[str] = ("png", "svg", "html"),
    tables: Sequence[str] = ("csv", "parquet"),
    scale: float = 2,
    make_zip: bool = True,
    specs: Sequence[Mapping[str, Any]] | None = None,
    load_model: Callable[[str], Any] | None = None,
    progress: Progress | None = None,
    title: str = "Layerscope report",
) -> ReportResult:
    """Write every figure of `run_keys` (see plan_report) with tables, sidecars and index.html.

    The report is built in a hidden temporary folder beside `out` and renamed into place
    only when complete (likewise `out`.zip), so an interrupted report never looks finished.
    A figure that cannot be built is listed under "Not drawn" with the reason; without a
    browser the images are left out (HTML and tables are still written) and the index says so.
    """
    started = time.perf_counter()
    out = Path(out).expanduser().resolve()
    _check_target(out)
    specs = list(specs) if specs is not None else plan_report(store, run_keys)
    progress = progress or (lambda done, total, message: None)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    zip_tmp = out.with_name(f".{out.name}.zip.partial-{uuid.uuid4().hex[:8]}")
    figures, not_drawn, notes = [], [], []
    try:
        folder = ensure_writable_dir(tmp / "figures")
        total = len(specs)
        for i, spec in enumerate(specs):
            label = (spec.get("params") or {}).get("title") or spec.get("figure")
            progress(i, total, f"figure {i + 1}/{total}: {label}")
            try:
                built = build_figure(spec, store, load_model=load_model)
            except LayerscopeError as err:
                not_drawn.append({"figure": spec.get("figure"), "title": label, "reason": str(err)})
                continue
            sidecar = export_figure(
                built.figure, folder, name=f"{len(figures) + 1:02d}-{slug(built.name, max_length=60)}", spec=spec,
                store=store, formats=[*formats, *tables], table=built.table, analysis=built.analysis,
                caption=built.caption, publication=publication, scale=scale,
            )
            figures.append(sidecar)
        if not figures:
            reasons = "; ".join(f"{d['title']}: {d['reason']}" for d in not_drawn[:3])
            raise LayerscopeError(f"no figure could be drawn for this report ({reasons})")
        skipped = {fmt for s in figures for fmt in s.get("skipped", {})}
        if skipped & set(IMAGE_FORMATS):
            notes.append(images_unavailable_reason() or "some images could not be rendered")
        progress(total, total, "writing index.html")
        runs = run_provenance(store, dict.fromkeys(k for s in specs for k in s.get("runs", [])))
        manifest = _manifest(title, runs, figures, not_drawn, notes, publication, scale)
        (tmp / "index.html").write_text(_index_html(manifest))
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        (tmp / "report.json").write_text(json.dumps(manifest, indent=1))  # last: marks the folder complete
        if make_zip:
            progress(total, total, "zipping")
            _zip_folder(tmp, zip_tmp, out.name)
        _publish(tmp, out)
        zip_path = None
        if make_zip:
            zip_path = out.with_name(f"{out.name}.zip")
            os.replace(zip_tmp, zip_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        zip_tmp.unlink(missing_ok=True)
        raise
    return ReportResult(out, zip_path, figures, not_drawn, time.perf_counter() - started, notes)


def _manifest(title, runs, figures, not_drawn, notes, publication, scale) -> dict[str, Any]:
    from core import __version__

    return {
        "kind": "layerscope.report",
        "title": title,
        "layerscope_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "style": {"publication": publication, "png_scale": scale},
        "runs": runs,
        "figures": [{"name": s["name"], "title": s["title"], "caption": s["caption"], "figure": s["spec"]["figure"],
                     "sidecar": f"figures/{s['name']}.json",
                     "files": {fmt: f"figures/{f['path']}" for fmt, f in s["files"].items()},
                     "notes": s["notes"], "skipped": s.get("skipped", {})} for s in figures],
        "not_drawn": not_drawn,
        "notes": notes,
    }


_CSS = """
body{font-family:Inter,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2430;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#5c6477;margin-top:0} table{border-collapse:collapse;font-size:.9rem}
td,th{border-bottom:1px solid #e6e9f0;padding:.3rem .6rem;text-align:left} code{font-size:.85rem}
figure{margin:2rem 0;padding-bottom:1.5rem;border-bottom:1px solid #e6e9f0} figure img{max-width:100%}
figcaption{margin-top:.5rem;line-height:1.45} .links a{margin-right:.8rem} .note{color:#a34700}
"""


def _index_html(manifest: Mapping[str, Any]) -> str:
    e = html.escape
    style = "publication style" if manifest["style"]["publication"] else "screen style"
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(manifest['title'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{e(manifest['title'])}</h1><p class='meta'>Layerscope {e(manifest['layerscope_version'])} · "
             f"{e(manifest['created'])} · {style} · {len(manifest['figures'])} figures</p>"]
    for note in manifest["notes"]:
        parts.append(f"<p class='note'>{e(note)}</p>")
    parts.append("<h2>Runs</h2><table><tr><th>model</th><th>weights</th><th>dataset</th><th>fingerprint</th>"
                 "<th>inputs</th><th>layers</th><th>pooling</th><th>run key</th></tr>")
    for run in manifest["runs"]:
        if run.get("missing"):
            parts.append(f"<tr><td colspan='7'>run not in the workspace</td><td><code>{e(run['key'])}</code></td></tr>")
            continue
        weights = str(run["model"].get("weights", ""))[:12]
        fingerprint = str(run["dataset"].get("fingerprint", ""))[:12]
        parts.append(
            f"<tr><td>{e(run['model']['name'])}</td><td><code>{e(weights)}</code></td>"
            f"<td>{e(run['dataset']['name'])}</td><td><code>{e(fingerprint)}</code></td>"
            f"<td>{run['dataset']['n_inputs']}</td><td>{len(run['layers'])}</td><td>{e(run['pooling'])}</td>"
            f"<td><code>{e(run['key'])}</code></td></tr>")
    parts.append("</table><h2>Figures</h2>")
    for i, fig in enumerate(manifest["figures"], 1):
        files = fig["files"]
        image = (f"<img src='{e(files['png'])}' alt='{e(fig['title'])}' loading='lazy'>" if "png" in files else
                 f"<p class='note'>No image: {e(next(iter(fig['skipped'].values()), 'not rendered'))}</p>")
        labels = {"svg": "SVG", "pdf": "PDF", "html": "interactive HTML", "csv": "CSV", "parquet": "Parquet"}
        links = [f"<a href='{e(files[fmt])}'>{label}</a>" for fmt, label in labels.items() if fmt in files]
        links.append(f"<a href='{e(fig['sidecar'])}'>sidecar (JSON)</a>")
        notes = "".join(
            f" <span class='note'>{e(fmt.upper())}: {e(n.get('downsampled', {}).get('why') or n.get('animation', ''))}"
            "</span>" for fmt, n in fig["notes"].items()
        )
        parts.append(f"<figure id='{e(fig['name'])}'>{image}<figcaption><b>Figure {i}. {e(fig['title'])}</b> "
                     f"{e(fig['caption'])}{notes}<br><span class='links'>{''.join(links)}</span></figcaption></figure>")
    if manifest["not_drawn"]:
        parts.append("<h2>Not drawn</h2><ul>")
        parts += [f"<li><b>{e(str(d['title']))}</b>: {e(d['reason'])}</li>" for d in manifest["not_drawn"]]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ----- regenerating from sidecars -----------------------------------------------------------------
@dataclass
class Regenerated:
    """One figure regenerated from its sidecar."""

    sidecar: Path  # the sidecar read
    written: dict[str, Any]  # the new sidecar (files written beside it)
    folder: Path  # where the files went
    matches: bool  # the regenerated figure's data equals the exported figure's
    warnings: list[str] = field(default_factory=list)


def find_sidecars(path: str | os.PathLike) -> list[Path]:
    """The sidecar itself, or every figure sidecar under a folder (a report, an exports folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = []
        for candidate in sorted(path.rglob("*.json")):
            if "regenerated" in candidate.relative_to(path).parts[:-1]:
                continue
            try:
                if json.loads(candidate.read_text()).get("kind") == "layerscope.figure":
                    found.append(candidate)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                continue
        if not found:
            raise LayerscopeError(f"{path} holds no Layerscope figure sidecars (*.json with kind 'layerscope.figure')")
        return found
    return [path]


def _reextract(store, run: Mapping[str, Any], load_model: Callable[[str], Any] | None) -> str:
    """Extract a run described by a sidecar again; its key, or LayerscopeError saying why it cannot be."""
    import core

    what = f"run {run['key']} ({run['model']['name']} on {run['dataset']['name']}, pooling {run['pooling']})"
    if _is_untrained(run):
        raise LayerscopeError(f"{what} is not in the workspace {store.root} and is an untrained twin; "
                              "extract it again on the Geometry or Compare page, then regenerate")
    try:
        model = load_model(run["model"]["name"]) if load_model else core.load_model(run["model"]["name"],
                                                                                      workspace=store.root)
        if model.weights_hash != run["model"].get("weights"):
            raise LayerscopeError(f"model {run['model']['name']!r} now has different weights "
                                  f"({model.weights_hash[:12]} instead of {str(run['model'].get('weights'))[:12]})")
        info = run["dataset"]
        dataset = core.load_dataset(info["name"], text_column=info.get("text_column"),
                                    label_columns=info.get("label_columns"))
        if len(dataset) > info["n_inputs"]:
            dataset = core.load_dataset(info["name"], text_column=info.get("text_column"),
                                        label_columns=info.get("label_columns"), limit=info["n_inputs"])
        if dataset.fingerprint != info.get("fingerprint"):
            raise LayerscopeError(f"dataset {info['name']!r} has changed since (fingerprint {dataset.fingerprint[:12]} "
                                  f"instead of {str(info.get('fingerprint'))[:12]})")
        acts = core.extract(model, dataset, layers=run["layers"], pooling=run["pooling"], dtype=run.get("dtype"),
                            max_length=run.get("max_length"), store=store)
    except LayerscopeError as err:
        raise LayerscopeError(
            f"{what} is not in the workspace {store.root} and cannot be extracted again: {err}"
        ) from None
    return acts.key


def regenerate(
    sidecar_path: str | os.PathLike,
    store,
    *,
    out: str | os.PathLike | None = None,
    formats: Sequence[str] | None = None,
    scale: float | None = None,
    extract_missing: bool = True,
    load_model: Callable[[str], Any] | None = None,
) -> Regenerated:
    """Rebuild one figure from its sidecar and write it (default: `<sidecar folder>/regenerated/`).

    A sidecar from another Layerscope version is regenerated with this one (a warning says
    so). A run no longer in the store is extracted again when its model and dataset can be
    loaded with the same weights hash and fingerprint (`extract_missing`); otherwise
    LayerscopeError says what cannot be regenerated and why.
    """
    from core import __version__

    path = Path(sidecar_path).expanduser()
    sidecar = read_sidecar(path)
    warnings = []
    if sidecar.get("layerscope_version") != __version__:
        warnings.append(f"{path.name} was made with Layerscope {sidecar.get('layerscope_version')}; "
                        f"regenerating with {__version__} (results of a changed analysis may differ)")
    spec = sidecar.get("spec") or {}
    if not sidecar.get("regenerable") or not spec.get("figure"):
        raise LayerscopeError(f"{path.name} cannot be regenerated: it was exported without a figure spec "
                              "(its files and provenance are all there is)")
    text = json.dumps(spec)
    for run in sidecar.get("runs", []):
        if run.get("missing") or store.has_run(run["key"]):
            continue
        if not extract_missing:
            raise LayerscopeError(f"{path.name} cannot be regenerated: run {run['key']} is not in the workspace "
                                  f"{store.root}")
        key = _reextract(store, run, load_model)
        if key != run["key"]:
            warnings.append(f"run {run['key']} was extracted again as {key}")
            text = text.replace(run["key"], key)
    spec = json.loads(text)
    missing = [k for k in spec.get("runs", []) if not store.has_run(k)]
    if missing:
        raise LayerscopeError(f"{path.name} cannot be regenerated: run(s) {', '.join(missing)} are not in the "
                              f"workspace {store.root}")
    built = build_figure(spec, store, load_model=load_model)
    matches = data_fingerprint(built.figure) == sidecar.get("data_sha256")
    if not matches:
        warnings.append(f"{path.name}: the regenerated figure's data differ from the exported figure's")
    style = sidecar.get("style", {})
    folder = Path(out).expanduser() if out is not None else path.parent / "regenerated"
    written = export_figure(
        built.figure, folder, name=sidecar.get("name") or path.stem, spec=spec, store=store,
        formats=formats or list(sidecar.get("files") or ()) or ("png", "svg", "html", "csv", "parquet"),
        table=built.table, analysis=built.analysis, caption=built.caption,
        publication=style.get("publication", True), scale=scale or style.get("png_scale", 2),
    )
    return Regenerated(path, written, folder, matches, warnings)
