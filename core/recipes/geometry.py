"""Geometry figures: metric curves against depth (Geometry page), one input's token trajectory and its
curvature at each layer (Trajectory page)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.data.naming import display_name
from core.errors import LayerscopeError
from core.export.tables import figure_table
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register, run_keys
from core.runs import check_layer
from core.validation import check_int

PAGE_METRICS = ("curvature", "intrinsic_dimension")  # the Geometry page's default metrics
PAGE_OPTIONS = {"curvature_variant": "signed", "id_method": "twonn", "entropy_alpha": 1.0}  # and its options


def geometry_result(context: Context, acts, metrics: Sequence[str], options: Mapping[str, Any]):
    """The GeometryResult of `metrics` (computed together) on every layer of a run, through the store."""
    from core.analysis.geometry import geometry_by_layer

    def compute():
        return geometry_by_layer(acts, tuple(metrics), store=context.store, **dict(options))

    key = ("geometry", acts.key, tuple(metrics), json.dumps(dict(options), sort_keys=True))
    return context.cached(key, compute)


def band_metrics(metrics: Sequence[str]) -> list[str]:
    """The metrics of a geometry job that get bands over resampled inputs (intrinsic dimension, entropy, rank)."""
    from core.analysis.geometry import BAND_METRICS

    return [m for m in metrics if m in BAND_METRICS]


def bands_result(context: Context, acts, metrics: Sequence[str], options: Mapping[str, Any], *, n_boot: int,
                 level: float, subsample: float, bootstrap_seed: int):
    """The GeometryBands of the band metrics among `metrics` on every layer of a run, through the store."""
    from core.analysis.geometry import geometry_bands

    def compute():
        return geometry_bands(acts, band_metrics(metrics), store=context.store, n_boot=n_boot, level=level,
                              subsample=subsample, bootstrap_seed=bootstrap_seed, **dict(options))

    key = ("geometry_bands", acts.key, tuple(band_metrics(metrics)), json.dumps(dict(options), sort_keys=True),
           n_boot, level, subsample, bootstrap_seed)
    return context.cached(key, compute)


def legend_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Legend names of runs (their metadata): model names, with pooling or dataset when two share a model."""
    names = [run["model"]["name"] for run in runs]
    for i, run in enumerate(runs):
        same_model = [r for r in runs if r["model"]["name"] == run["model"]["name"]]
        if len(same_model) > 1:
            same_data = len({r["dataset"]["name"] for r in same_model}) == 1
            names[i] += f" · {run['pooling'] if same_data else display_name(run['dataset']['name'])}"
    return names


def geometry_table(results: Mapping[str, Any], metric: str) -> pd.DataFrame:
    """One row per (curve, layer): the metric's mean and interquartile range as drawn, inputs left out,
    and for intrinsic dimension the duplicate points removed before the fit (empty where not counted)."""
    from core.figures.geometry import in_display_units

    def frame(name: str, r) -> pd.DataFrame:
        table = pd.DataFrame({"run": name, "layer": list(r.layer_names),
                              "value": in_display_units(metric, r.mean[metric]),
                              "q25": in_display_units(metric, r.q25[metric]),
                              "q75": in_display_units(metric, r.q75[metric]), "inputs left out": r.n_skipped[metric]})
        if metric == "intrinsic_dimension":
            table["duplicates removed"] = r.n_duplicates if r.n_duplicates is not None else np.nan
        return table

    return pd.concat([frame(name, r) for name, r in results.items()], ignore_index=True)


def duplicates_note(results: Mapping[str, Any]) -> str | None:
    """A sentence naming the curves and layers whose duplicate points TwoNN removed; None if none were."""
    parts = [f"{name}: " + ", ".join(f"{int(c)} at {layer}" for layer, c in zip(r.layer_names, r.n_duplicates) if c)
             for name, r in results.items() if r.n_duplicates is not None and np.any(r.n_duplicates)]
    if not parts:
        return None
    return ("Duplicate points removed before the intrinsic-dimension fit (a copy is at distance 0): "
            + "; ".join(parts) + ".")


@register("geometry_curves", page="views/geometry.py")
def geometry_recipe(context: Context, runs, *, curves: Sequence[Mapping[str, Any]], metric: str,
                    relative_depth: bool = True, controls: Sequence[str] = (), bands: bool = False,
                    n_boot: int = 50, level: float = 0.95, subsample: float = 0.8, bootstrap_seed: int = 0,
                    title: str | None = None) -> BuiltFigure:
    """The Geometry page's curve of one metric against depth, one line per (run, variant).

    curves: [{"name": legend name, "run": key, "metrics": metrics computed together, "options": {...}}].
    bands: for intrinsic dimension, dataset entropy and effective rank, draw each curve's band over
    resampled inputs (core.analysis.geometry.bootstrap: `n_boot` resamples at `level`; intrinsic
    dimension on subsamples of `subsample` of the inputs without replacement; `bootstrap_seed`).
    """
    from core.figures.geometry import METRIC_TITLES, geometry_curves, metric_variant

    if not curves:
        raise LayerscopeError("figure 'geometry_curves' needs at least one curve")
    results = {curve["name"]: geometry_result(context, context.run(curve["run"]), curve["metrics"],
                                              curve.get("options") or {}) for curve in curves}
    first = context.run(curves[0]["run"])
    resampled = {}
    if bands and band_metrics([metric]):
        resampled = {curve["name"]: bands_result(context, context.run(curve["run"]), curve["metrics"],
                                                 curve.get("options") or {}, n_boot=n_boot, level=level,
                                                 subsample=subsample, bootstrap_seed=bootstrap_seed)
                     for curve in curves if metric in curve["metrics"]}
    fig = geometry_curves(results, metric, relative_depth=relative_depth, controls=set(controls), bands=resampled,
                          title=title or f"{METRIC_TITLES.get(metric, metric)} by layer · {first.dataset_name}")
    analysis = {"metric": metric, "variant": {n: metric_variant(r, metric) for n, r in results.items()},
                "parameters": {n: r.params for n, r in results.items()},
                "seeds": {n: r.params.get("seed") for n, r in results.items()},
                "reasons": {n: r.reasons.get(metric) for n, r in results.items() if r.reasons.get(metric)}}
    caption = f"{METRIC_TITLES.get(metric, metric)} against depth for {', '.join(results)}."
    if metric == "intrinsic_dimension":
        duplicates = {n: None if r.n_duplicates is None else [int(c) for c in r.n_duplicates]
                      for n, r in results.items()}
        analysis["duplicates_removed"] = duplicates
        note = duplicates_note(results)
        caption += f" {note}" if note else ""
    table = geometry_table(results, metric)
    if resampled:
        first_bands = next(iter(resampled.values()))
        caption += f" Bands: {first_bands.name(metric)}."
        analysis["bands"] = {n: {"band": b.name(metric), "reason": b.reasons.get(metric),
                                 **{k: v for k, v in b.params.items() if k not in ("run", "layers")}}
                             for n, b in resampled.items()}
        table["band_low"], table["band_high"] = np.nan, np.nan
        for n, b in resampled.items():
            rows = table["run"] == n
            table.loc[rows, "band_low"], table.loc[rows, "band_high"] = b.low[metric], b.high[metric]
    return BuiltFigure(fig, table, analysis, caption, f"geometry-{metric}", result=results)


def _input_index(acts, index: Any) -> int:
    return check_int("index", index, low=0, high=acts.n_inputs - 1)


@register("trajectory", page="views/trajectory.py")
def trajectory_recipe(context: Context, runs, *, layer: str, index: int, variant: str = "signed",
                      skip_first: bool = False, title: str | None = None) -> BuiltFigure:
    """The Trajectory page's path of one input's tokens at one layer."""
    from core.figures.geometry import trajectory_figure
    from core.tokens import display_tokens

    acts = context.run(run_keys(runs, "trajectory")[0])
    layer, index = check_layer(acts, layer), _input_index(acts, index)
    vectors = acts.input_tokens(layer, index).astype(np.float64)  # (tokens, d)
    tokens = display_tokens(acts.tokens[acts.input_rows(index)])
    fig = trajectory_figure(vectors, tokens, layer=layer, variant=variant, skip_first=skip_first,
                            title=title or f"{acts.model_name} · input {index} at {layer}")
    analysis = {"metric": "curvature (turning angle)", "variant": variant, "parameters": {"layer": layer,
                "index": index, "skip_first": skip_first}, "seeds": {}}
    caption = f"Token trajectory of input {index} at {layer} ({acts.model_name}), in the PCA plane of its own tokens."
    return BuiltFigure(fig, figure_table(fig), analysis, caption, f"trajectory-input{index}-{layer}",
                       result=(vectors, tokens))


def input_curvature(context: Context, acts, index: int, variant: str) -> np.ndarray:
    """(n_layers,) curvature (radians) of input `index`'s token trajectory at each layer, NaN where undefined."""
    from core.analysis.geometry import curvature

    def compute() -> np.ndarray:
        return np.array([curvature(acts.input_tokens(layer, index), variant=variant) for layer in acts.layer_names])

    return context.cached(("input_curvature", acts.key, index, variant), compute)


@register("curvature_by_layer", page="views/trajectory.py")
def curvature_recipe(context: Context, runs, *, index: int, variant: str = "signed", reference: bool = False,
                     input_label: str | None = None, title: str | None = None) -> BuiltFigure:
    """The Trajectory page's curvature of one input at each layer (with the band over all inputs)."""
    from core.figures.geometry import curvature_by_layer_figure

    acts = context.run(run_keys(runs, "curvature_by_layer")[0])
    index = _input_index(acts, index)
    per_layer = input_curvature(context, acts, index, variant)
    ref = geometry_result(context, acts, ("curvature",), {"curvature_variant": variant}) if reference else None
    fig = curvature_by_layer_figure(acts.layer_names, per_layer, input_label=input_label or f"input {index}",
                                    reference=ref, title=title or f"Curvature of input {index} by layer")
    table = pd.DataFrame({"layer": acts.layer_names, "curvature_degrees": np.degrees(per_layer)})
    if ref is not None:
        table["all_inputs_mean_degrees"] = np.degrees(ref.mean["curvature"])
    analysis = {"metric": "curvature", "variant": variant, "parameters": {"index": index, "reference": reference,
                **(ref.params if ref is not None else {})}, "seeds": {}}
    caption = f"Curvature of input {index}'s token trajectory at each layer of {acts.model_name} ({variant})."
    return BuiltFigure(fig, table, analysis, caption, f"curvature-input{index}", result=per_layer)
