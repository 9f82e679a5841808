"""What a report holds: the specs of every figure the pages draw for some runs, with the pages' defaults."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.errors import LayerscopeError
from core.export.sidecar import figure_spec
from core.recipes.geometry import PAGE_METRICS, PAGE_OPTIONS, legend_names
from core.recipes.interventions import stored_intervention_specs
from core.runs import is_untrained

MAX_MAPS = 8  # layer maps per run, evenly spaced


def _spread(items: Sequence[str], count: int) -> list[str]:
    """At most `count` items, evenly spaced, first and last included."""
    if len(items) <= count:
        return list(items)
    picks = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
    return [items[i] for i in picks]


def _run_specs(acts, max_maps: int, lens_text: str | None) -> list[dict[str, Any]]:
    """The figures of one run: maps, its animation, probes, a trajectory, the logit lens."""
    specs = []
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
    causal = bool(acts.meta["model"].get("is_causal_lm"))
    if acts.is_tokens:
        long_enough = np.flatnonzero(acts.lengths >= 3)
        index = int(long_enough[0]) if long_enough.size else 0
        layer = acts.layer_names[len(acts.layer_names) // 2]
        specs.append(figure_spec("trajectory", [acts.key], layer=layer, index=index, variant="signed",
                                 skip_first=causal, title=f"{acts.model_name} · input {index} at {layer}"))
        specs.append(figure_spec("curvature_by_layer", [acts.key], index=index, variant="signed", reference=True,
                                 input_label=f"input {index}", title=f"Curvature of input {index} by layer"))
    if causal and not is_untrained(acts):
        text = lens_text or (acts.texts[0] if acts.n_inputs else "")
        specs.append(figure_spec("lens_heatmap", [], model=acts.model_name, text=text, top_k=5))
        specs.append(figure_spec("kl_curve", [], model=acts.model_name, text=text, top_k=5))
    return specs


def _geometry_specs(runs: Sequence[Any], geometry_metrics: Sequence[str]) -> list[dict[str, Any]]:
    """The Geometry page's curves of every run together (untrained runs drawn as controls)."""
    from core.analysis.geometry import PER_INPUT_METRICS, RESULT_METRICS
    from core.figures.geometry import METRIC_TITLES

    any_tokens = any(acts.is_tokens for acts in runs)
    metrics = [m for m in geometry_metrics if m in RESULT_METRICS and (any_tokens or m not in PER_INPUT_METRICS)]
    if not metrics:
        return []
    names = legend_names([acts.meta for acts in runs])
    curves = [{"name": name, "run": acts.key, "metrics": list(geometry_metrics), "options": PAGE_OPTIONS}
              for name, acts in zip(names, runs)]
    controls = [name for name, acts in zip(names, runs) if is_untrained(acts)]
    return [figure_spec("geometry_curves", [a.key for a in runs], curves=curves, metric=name, relative_depth=True,
                        controls=controls, title=f"{METRIC_TITLES.get(name, name)} by layer · {runs[0].dataset_name}")
            for metric in metrics for name in RESULT_METRICS[metric]]


def _comparison_specs(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """Compare's heatmap and probe curves for the first two runs of different models on the same inputs."""
    from core.analysis.similarity import metric_label

    pair = next(((a, b) for i, a in enumerate(runs) for b in runs[i + 1:]
                 if a.meta["dataset"]["fingerprint"] == b.meta["dataset"]["fingerprint"] and a.n_inputs == b.n_inputs
                 and a.meta["model"]["weights"] != b.meta["model"]["weights"]), None)
    if pair is None:
        return []
    a, b = pair
    title = f"{metric_label('linear_cka', {})}: {a.model_name} vs {b.model_name} on {a.dataset_name}"
    specs = [figure_spec("similarity_heatmap", [a.key, b.key], metric="linear_cka", metric_params={}, title=title)]
    if a.label_columns and not (a.is_tokens or b.is_tokens):
        specs.append(figure_spec("probe_depth_curves", [a.key, b.key], column=a.label_columns[0],
                                 names=[f"A: {a.model_name}", f"B: {b.model_name}"]))
    return specs


def plan_report(
    store,
    run_keys: Sequence[str],
    *,
    geometry_metrics: Sequence[str] = PAGE_METRICS,
    max_maps: int = MAX_MAPS,
    lens_text: str | None = None,
) -> list[dict[str, Any]]:
    """Specs of every figure the dashboard's pages draw for these runs.

    Per run: the explorer's PCA map of up to `max_maps` layers (evenly spaced) and its
    animation, a probe curve per label column, and for tokens runs one input's trajectory
    and curvature by layer; for causal LMs the logit lens of `lens_text` (default the first
    input). Across runs: geometry curves of `geometry_metrics` (the Geometry page's
    defaults; per-token metrics only when a run has pooling="tokens"); for the first two
    runs of different models on the same inputs, the CKA heatmap and probe curves on
    relative depth. Steering and erasure figures already computed for these runs (on the
    Interventions page or the CLI) are included as they were asked for. Probes need one
    vector per input, so tokens runs get none.
    """
    if not run_keys:
        raise LayerscopeError("no runs to report; give at least one run key (see `python -m core ls`)")
    runs = [store.open_run(key) for key in dict.fromkeys(run_keys)]
    specs = [spec for acts in runs for spec in _run_specs(acts, max_maps, lens_text)]
    specs += _geometry_specs(runs, geometry_metrics) + _comparison_specs(runs)
    specs += stored_intervention_specs(store, [acts.key for acts in runs])  # steering / erasure computed before
    return list({json.dumps(spec, sort_keys=True): spec for spec in specs}.values())  # e.g. one lens per model
