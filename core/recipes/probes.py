"""Probe figures: held-out probe score per layer (the Probes page), and several runs on relative depth (Compare)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.errors import LayerscopeError
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register, run_keys


def probe_result(context: Context, acts, column: str, *, task: str = "auto", control: str = "auto",
                 dropna: bool = True, drop_rare: bool = True):
    """The run's ProbeResult for `column` (5-fold CV, seed 0), through the store.

    control: "auto" (the control task for single-word inputs, else shuffled labels),
    "shuffled" or "task". Inputs without a label and classes too rare for the folds are
    left out (and counted), as on the Probes page.
    """
    from core.analysis.probes import probe_by_layer_cached

    def compute():
        return probe_by_layer_cached(acts, column, context.store, task=task, control=control, dropna=dropna,
                                     drop_rare=drop_rare)

    return context.cached(("probe", acts.key, column, task, control, dropna, drop_rare), compute)


def score_name(result) -> str:
    """"accuracy" for a classification probe, "R²" for a regression one."""
    return "accuracy" if result.metric == "accuracy" else "R²"


def control_name(result) -> str:
    """The result's control as legends and sidecars name it, e.g. "shuffled-label control"."""
    from core.analysis.probes import CONTROL_NAMES
    from core.analysis.probes.controls import stored_control

    return CONTROL_NAMES[stored_control(result.params)]


def _probe_analysis(result) -> dict[str, Any]:
    p = result.params
    estimator = (f"multinomial logistic regression (L2, C={p.get('C', 1.0):g})" if result.metric == "accuracy"
                 else "ridge regression (alpha chosen on each training split)")
    return {"metric": result.metric, "variant": f"{estimator}, {p.get('n_folds', 5)}-fold CV, {control_name(result)}",
            "parameters": p, "seeds": {"folds_and_control": p.get("seed", 0)}, "n": result.n,
            "n_dropped": result.n_dropped, "chance": result.chance}


def probe_interval_of(context: Context, acts, result, column: str, *, level: float, n_boot: int, seed: int):
    """The ProbeInterval of a probe result (bootstrap over its out-of-fold predictions), computed once per context."""
    from core.analysis.probes import probe_interval

    key = ("probe_interval", acts.key, column, json.dumps(result.params, sort_keys=True, default=str), level,
           n_boot, seed)
    return context.cached(key, lambda: probe_interval(result, level=level, n_boot=n_boot, seed=seed))


def interval_analysis(interval) -> dict[str, Any]:
    """A ProbeInterval's settings and best-vs-last test, as a sidecar records them."""
    return {**{k: v for k, v in interval.params.items() if k != "probe"},
            "best_layer": interval.best_layer, "last_layer": interval.last_layer,
            "best_minus_last": interval.difference,
            "best_minus_last_interval": [interval.difference_low, interval.difference_high],
            "p_value_one_sided": interval.p_value}


@register("probe_curve", page="views/probes.py")
def probe_curve_recipe(context: Context, runs, *, column: str, task: str = "auto", control: str = "auto",
                       dropna: bool = True, drop_rare: bool = True, interval: bool = True, level: float = 0.95,
                       n_boot: int = 1000, bootstrap_seed: int = 0, title: str | None = None) -> BuiltFigure:
    """The Probes page's curve: held-out score per layer with the control (named by its kind) and chance.

    interval: draw the percentile bootstrap interval over inputs (`level`, `n_boot` resamples drawn
    with `bootstrap_seed`) and give best layer vs last layer in the legend.
    """
    from core.figures.probes import baseline_name, probe_curve

    acts = context.run(run_keys(runs, "probe_curve")[0])
    result = probe_result(context, acts, column, task=task, control=control, dropna=dropna, drop_rare=drop_rare)
    boot = probe_interval_of(context, acts, result, column, level=level, n_boot=n_boot,
                             seed=bootstrap_seed) if interval else None
    fig = probe_curve(result, interval=boot,
                      title=title or f"{acts.model_name} on {acts.dataset_name}: probing {column}")
    spread = f"mean over folds, {boot.name}" if boot is not None else "mean ± std over folds"
    caption = (f"Linear probe {score_name(result)} for {column} at each layer of {acts.model_name} on "
               f"{acts.dataset_name} ({spread}), with the {control_name(result)} and "
               f"{baseline_name(result.metric)} ({result.chance:.3f}); best layer {result.best_layer}.")
    table, analysis = result.to_frame(), _probe_analysis(result)
    if boot is not None:
        caption += f" Best layer vs last layer: {boot.best_vs_last()} (paired bootstrap, one-sided)."
        table = table.assign(out_of_fold=boot.estimate, interval_low=boot.low, interval_high=boot.high)
        analysis["interval"] = interval_analysis(boot)
    return BuiltFigure(fig, table, analysis, caption, f"probe-{acts.model_name}-{column}", result=result)


@register("probe_depth_curves", page="views/compare.py")
def probe_depth_recipe(context: Context, runs, *, column: str, names: Sequence[str] | None = None,
                       title: str | None = None, y_title: str | None = None) -> BuiltFigure:
    """Compare's probe curves of several runs on one relative-depth axis."""
    from core.figures.similarity import relative_depth_curves

    if not runs:
        raise LayerscopeError("figure 'probe_depth_curves' needs at least one run key")
    names = list(names) if names else [context.run(key).model_name for key in runs]
    if len(names) != len(runs):
        raise LayerscopeError(f"names={names!r} must give one legend name per run ({len(runs)})")
    results = [probe_result(context, context.run(key), column) for key in runs]
    curves = {name: (list(r.layer_names), np.asarray(r.mean)) for name, r in zip(names, results)}
    score = score_name(results[-1])
    fig = relative_depth_curves(curves, y_title=y_title or f"held-out probe {score}",
                                title=title or f"Linear probe {score} for {column}, both models")
    table = pd.concat([r.to_frame().assign(run=name) for name, r in zip(names, results)], ignore_index=True)
    caption = f"Linear probe {score} for {column} on a relative-depth axis: {', '.join(names)}."
    return BuiltFigure(fig, table, {**_probe_analysis(results[0]), "runs": list(names)}, caption,
                       f"probe-depth-{column}", result=results)
