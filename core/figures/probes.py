"""Probe accuracy (or R^2) per layer, with spread, the baseline (chance) and the control task."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.analysis.probes.controls import stored_control
from core.figures.depth import band, curve, style_depth_figure
from core.figures.style import ACCENT, MUTED

# legend name of each control (core.analysis.probes.controls)
CONTROL_LEGEND = {"shuffled": "control (shuffled labels)", "task": "control task (one label per word type)"}
# what the score of a probe that learnt nothing is called, by metric: the majority-class share for
# accuracy; for R^2, the score of predicting the training mean (0 by the definition of R^2)
BASELINE_NAMES = {"accuracy": "chance", "r2": "baseline: predict the mean"}
# room kept above the best score for the value written over its star, as a share of the y span:
# the label sits about 30 px above the point, and a static export clips what leaves the plot area
LABEL_HEADROOM = 0.15


def baseline_name(metric: str) -> str:
    """The name of the no-information score of a probe `metric` ("accuracy" or "r2") in legends and pages."""
    return BASELINE_NAMES.get(metric, "chance")


def score_range(result, interval=None) -> list[float]:
    """The y range [low, high] of a probe curve: its curves, bands and baseline, and room for the best score's label.

    Accuracy keeps 0 at the bottom and at least 1 at the top, so that runs read alike.
    """
    mean = np.asarray(result.mean, dtype=float)
    drawn = [mean - result.std, mean + result.std, [getattr(result, "chance", np.nan)]]
    if interval is not None:
        drawn += [interval.low, interval.high]
    if getattr(result, "control_mean", None) is not None:
        control = np.asarray(result.control_mean, dtype=float)
        drawn += [control - result.control_std, control + result.control_std]
    values = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in drawn])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if result.metric == "accuracy":
        low, high = 0.0, max(high, 1.0)
    span = high - low if high > low else 1.0
    top = max(high + 0.05 * span, float(np.nanmax(mean)) + LABEL_HEADROOM * span)
    return [low if result.metric == "accuracy" else low - 0.05 * span, top]


def _score_with_spread(fig: go.Figure, x, mean, std, *, color: str, group: str, name: str, **trace) -> None:
    """A score per layer and its +/- 1 std band over folds behind it."""
    fig.add_trace(band(x, mean - std, mean + std, color=color, group=group, name=group, alpha=0.15))
    fig.add_trace(curve(x, mean, name=name, color=color, legendgroup=group, **trace))


def probe_curve(result, *, interval=None, title: str | None = None, publication: bool = False) -> go.Figure:
    """Line plot of held-out probe score per layer.

    Mean over folds with a +/- 1 std band, the control dashed (named by its kind), the
    baseline dotted (chance, the majority class share, for accuracy; predicting the mean,
    0, for R^2), best layer starred with its score above it, inside the y range.
    interval: a ProbeInterval (core.analysis.probes.bootstrap); its percentile band over
    inputs replaces the std band (named in the legend, e.g. "95% bootstrap interval over
    inputs, 1000 resamples") and the best layer's legend entry gives best vs last layer.
    Layers sit at integer positions 0..L-1 (0 = first extracted layer).
    """
    x = np.arange(len(result.layer_names))
    mean, std = np.asarray(result.mean), np.asarray(result.std)
    label = "accuracy" if result.metric == "accuracy" else "R²"
    fig = go.Figure()
    if interval is None:
        _score_with_spread(
            fig, x, mean, std, color=ACCENT, group="probe", name=f"linear probe ({label})",
            customdata=np.stack([np.array(result.layer_names, dtype=object), std], axis=1),
            hovertemplate="layer %{x} · %{customdata[0]}<br>" + label
            + " %{y:.3f} ± %{customdata[1]:.3f}<extra></extra>",
        )
    else:
        fig.add_trace(band(x, interval.low, interval.high, color=ACCENT, group="interval", name=interval.name,
                           alpha=0.2).update(showlegend=True))
        fig.add_trace(curve(
            x, mean, name=f"linear probe ({label})", color=ACCENT, legendgroup="probe",
            customdata=np.stack([np.array(result.layer_names, dtype=object), std, interval.low, interval.high],
                                axis=1),
            hovertemplate="layer %{x} · %{customdata[0]}<br>" + label + " %{y:.3f} ± %{customdata[1]:.3f} (folds)"
            "<br>" + interval.name + ": %{customdata[2]:.3f} – %{customdata[3]:.3f}<extra></extra>",
        ))
    control_mean = getattr(result, "control_mean", None)
    control = stored_control(getattr(result, "params", None) or {})
    if control_mean is not None and control in CONTROL_LEGEND:
        _score_with_spread(
            fig, x, np.asarray(control_mean), np.asarray(result.control_std), color=MUTED, group="control",
            name=CONTROL_LEGEND[control], dash="dash", width=2, marker={"symbol": "x"},
            hovertemplate="layer %{x}<br>control %{y:.3f}<extra></extra>",
        )
    chance = getattr(result, "chance", None)
    if chance is not None and np.isfinite(chance):
        fig.add_trace(
            go.Scatter(
                x=[x[0], x[-1]],
                y=[chance, chance],
                mode="lines",
                name=f"{baseline_name(result.metric)} ({chance:.3f})",
                line={"color": "#e03131", "dash": "dot", "width": 1.5},
                hoverinfo="skip",
            )
        )
    best = int(np.nanargmax(mean))
    fig.add_trace(
        go.Scatter(
            x=[x[best]],
            y=[mean[best]],
            mode="markers+text",
            name=f"best layer: {result.layer_names[best]}" + (
                f" · vs last layer: {interval.best_vs_last()}" if interval is not None
                and interval.best_layer != interval.last_layer else ""),
            marker={"symbol": "star", "size": 16, "color": "#fab005", "line": {"width": 1, "color": "#1f2430"}},
            text=[f"{mean[best]:.3f}"],
            textposition="top center",
            hoverinfo="skip",
        )
    )
    style_depth_figure(
        fig,
        title=title or f"Linear probe {label} per layer",
        y_title=f"held-out {label} ({getattr(result, 'n_folds', 5)}-fold CV)",
        relative_depth=False,
        publication=publication,
        legend_y=-0.2,
    )
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=[str(i) for i in x])
    fig.update_yaxes(range=score_range(result, interval))
    return fig
