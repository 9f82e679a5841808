"""Training dynamics: a per-layer quantity across checkpoints as a heatmap and as curves, each layer's
convergence to its final state, and one layer's map animated across checkpoints.

Checkpoints are ordered oldest first; the training step is the x axis where the series
knows it, the checkpoint's position otherwise. Curvature is drawn in degrees.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from core.analysis.dynamics import DynamicsResult
from core.figures.style import CONTINUOUS, MUTED, compact_layer_names, style_figure

CURVES_OVER = ("step", "layer")  # one curve per layer over training, or one per checkpoint over depth
X_AXES = ("step", "checkpoint")  # training over the step's value, or one even space per checkpoint (log-spaced saves)


def _shown(result: DynamicsResult) -> tuple[np.ndarray, str]:
    """(n_checkpoints, n_layers) values as drawn and their unit (curvature in degrees)."""
    if result.quantity == "curvature":
        return np.degrees(result.values), "degrees"
    return np.asarray(result.values, dtype=float), result.unit


def _axis_title(result: DynamicsResult, unit: str) -> str:
    return f"{result.label} ({unit})" if unit else result.label


def step_title(result: DynamicsResult) -> str:
    return "training step" if result.has_step_values else "checkpoint (oldest first)"


def _is_similarity(result: DynamicsResult) -> bool:
    return result.params.get("to") == "final"


def dynamics_heatmap(result: DynamicsResult, *, title: str | None = None, publication: bool = False,
                     show_values: bool = True) -> go.Figure:
    """Checkpoint x layer heatmap: layers on x, checkpoints on y (oldest at the bottom), the value as colour.

    show_values: write each cell's value in it (left out above 400 cells, where it cannot be read).
    A similarity to the final checkpoint spans 0..1; other quantities their own range.
    """
    values, unit = _shown(result)
    layers = compact_layer_names(result.layer_names)
    hover = [[f"checkpoint {html.escape(step)}<br>layer {html.escape(layer)}<br>{html.escape(result.label)}: "
              + (f"{values[i, j]:.4g}" if np.isfinite(values[i, j]) else "undefined")
              for j, layer in enumerate(result.layer_names)] for i, step in enumerate(result.steps)]
    scale = {"zmin": 0.0, "zmax": 1.0} if _is_similarity(result) and not result.params.get("is_distance") else {}
    labelled = show_values and values.size <= 400
    fig = go.Figure(go.Heatmap(
        z=values, x=layers, y=list(result.steps), colorscale=CONTINUOUS, text=hover,
        hovertemplate="%{text}<extra></extra>", texttemplate="%{z:.3g}" if labelled else None,
        colorbar={"title": {"text": _axis_title(result, unit), "side": "right"}}, **scale,
    ))
    style_figure(fig, title=title or f"{result.label} by checkpoint and layer", x_title="layer",
                 y_title="checkpoint", publication=publication)
    fig.update_yaxes(type="category", showgrid=False)
    fig.update_xaxes(type="category", showgrid=False)
    return fig


def _colours(n: int) -> list[str]:
    """n colours along the continuous scale: early (or shallow) dark, late (or deep) light."""
    return sample_colorscale(CONTINUOUS, list(np.linspace(0.0, 0.9, n))) if n > 1 else sample_colorscale(CONTINUOUS, [0.0])


def training_axis(result: DynamicsResult, x_axis: str = "step") -> np.ndarray:
    """(n_checkpoints,) x of each checkpoint: its training step, or its position (x_axis="checkpoint", or no steps)."""
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis={x_axis!r} must be one of: {', '.join(X_AXES)}")
    return result.x_values if x_axis == "step" else np.arange(len(result.steps), dtype=float)


def dynamics_curves(result: DynamicsResult, *, over: str = "step", title: str | None = None,
                    publication: bool = False, threshold: float | None = None, x_axis: str = "step") -> go.Figure:
    """The same values as curves: over="step" one curve per layer over training (colour = depth),
    over="layer" one curve per checkpoint over the layers (colour = training progress).

    threshold: with over="step", a dotted line at that value (e.g. 0.9 of the final similarity).
    x_axis: with over="step", "step" (the training step) or "checkpoint" (evenly spaced, labelled).
    NaN cells are gaps, never interpolated.
    """
    if over not in CURVES_OVER:
        raise ValueError(f"over={over!r} must be one of: {', '.join(CURVES_OVER)}")
    values, unit = _shown(result)
    fig = go.Figure()
    x_steps = training_axis(result, x_axis)
    if over == "step":
        colours = _colours(len(result.layer_names))
        for j, layer in enumerate(result.layer_names):
            fig.add_trace(go.Scatter(
                x=x_steps, y=values[:, j], mode="lines+markers", name=layer, connectgaps=False,
                line={"color": colours[j], "width": 2.2}, marker={"size": 5}, customdata=list(result.steps),
                hovertemplate=f"<b>{html.escape(layer)}</b><br>checkpoint %{{customdata}}<br>%{{y:.4g}}<extra></extra>",
            ))
        x_title = step_title(result) if x_axis == "step" else "checkpoint (evenly spaced)"
        if x_axis == "checkpoint" or not result.has_step_values:
            fig.update_xaxes(tickmode="array", tickvals=x_steps, ticktext=list(result.steps))
        if threshold is not None:
            fig.add_hline(y=threshold, line={"color": MUTED, "dash": "dot", "width": 1.5},
                          annotation_text=f"{threshold:g}", annotation_position="bottom right")
    else:
        colours = _colours(len(result.steps))
        index = np.arange(len(result.layer_names))
        for i, step in enumerate(result.steps):
            fig.add_trace(go.Scatter(
                x=index, y=values[i], mode="lines+markers", name=step, connectgaps=False,
                line={"color": colours[i], "width": 2.0}, marker={"size": 5}, customdata=list(result.layer_names),
                hovertemplate=f"<b>checkpoint {html.escape(step)}</b><br>layer %{{customdata}}<br>%{{y:.4g}}<extra></extra>",
            ))
        x_title = "layer"
        fig.update_xaxes(tickmode="array", tickvals=index, ticktext=compact_layer_names(result.layer_names))
    legend_title = "layer" if over == "step" else "checkpoint"
    default = (f"{result.label} over training, one curve per layer" if over == "step"
               else f"{result.label} by layer, one curve per checkpoint")
    style_figure(fig, title=title or default, x_title=x_title, y_title=_axis_title(result, unit),
                 publication=publication)
    fig.update_layout(hovermode="closest", legend={"title": {"text": legend_title}})
    return fig


def convergence_curves(result: DynamicsResult, *, fraction: float = 0.9, title: str | None = None,
                       publication: bool = False, x_axis: str = "step") -> go.Figure:
    """Each layer's similarity to its final state over training (Raghu et al. 2017, Fig. 4), with the
    line at `fraction` of the final value and a marker where each layer reaches it for good."""
    from core.analysis.dynamics import steps_to_reach

    fig = dynamics_curves(result, over="step", publication=publication, threshold=fraction, x_axis=x_axis,
                          title=title or f"{result.label}, per layer")
    reached = steps_to_reach(result, fraction)
    colours = _colours(len(result.layer_names))
    positions = training_axis(result, x_axis)
    for j, layer in enumerate(result.layer_names):
        x = reached[layer]
        if np.isfinite(x):
            k = int(np.flatnonzero(result.x_values == x)[0])
            fig.add_trace(go.Scatter(
                x=[positions[k]], y=[result.values[k, j]], mode="markers", showlegend=False, name=f"{layer} reaches {fraction:g}",
                marker={"symbol": "diamond-open", "size": 12, "color": colours[j], "line": {"width": 2}},
                hovertemplate=f"{html.escape(layer)} stays ≥ {fraction:g} × final from {html.escape(result.steps[k])}"
                              "<extra></extra>",
            ))
    return fig


def animated_checkpoint_map(
    coords: np.ndarray,
    steps: Sequence[str],
    *,
    texts: Sequence[str],
    labels: pd.DataFrame | None = None,
    color_by: str | None = None,
    rows: np.ndarray | None = None,
    title: str = "A layer across checkpoints",
    axis_name: str = "PC",
) -> go.Figure:
    """One frame per checkpoint of one layer's aligned map (coords: (n_checkpoints, n_inputs, 2)), with
    play/pause and a checkpoint slider; axes fixed so that motion is the representation's."""
    from core.figures.maps import animated_layer_map

    fig = animated_layer_map([np.asarray(c) for c in coords], list(steps), texts=texts, labels=labels,
                             color_by=color_by, rows=rows, title=title, axis_name=axis_name)
    fig.layout.sliders[0].currentvalue.prefix = "checkpoint: "
    return fig


def reached_table(reached: Mapping[str, float]) -> pd.DataFrame:
    """Layer and the step from which it stays above the threshold (NaN: never within the series)."""
    return pd.DataFrame({"layer": list(reached), "step_reached": list(reached.values())})
