"""Probe accuracy (or R^2) per layer, with spread, chance and the control task."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.figures.style import ACCENT, MUTED, style_figure


def _band(x, low, high, color: str, name: str) -> go.Scatter:
    return go.Scatter(
        x=list(x) + list(x)[::-1],
        y=list(high) + list(low)[::-1],
        mode="lines",
        fill="toself",
        fillcolor=color,
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        name=name,
        legendgroup=name,
    )


def probe_curve(result, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """Line plot of held-out probe score per layer.

    Mean over folds with a +/- 1 std band, the shuffled-label control dashed,
    chance level (majority class share; 0 for R^2) dotted, best layer starred.
    Layers sit at integer positions 0..L-1 (0 = first extracted layer).
    """
    x = np.arange(len(result.layer_names))
    mean, std = np.asarray(result.mean), np.asarray(result.std)
    label = "accuracy" if result.metric == "accuracy" else "R²"
    fig = go.Figure()
    fig.add_trace(_band(x, mean - std, mean + std, "rgba(59,91,219,0.15)", "probe"))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=mean,
            mode="lines+markers",
            name=f"linear probe ({label})",
            legendgroup="probe",
            line={"color": ACCENT, "width": 2.5},
            customdata=np.stack([np.array(result.layer_names, dtype=object), std], axis=1),
            hovertemplate="layer %{x} · %{customdata[0]}<br>" + label + " %{y:.3f} ± %{customdata[1]:.3f}<extra></extra>",
        )
    )
    control_mean = getattr(result, "control_mean", None)
    if control_mean is not None:
        control_mean = np.asarray(control_mean)
        control_std = np.asarray(result.control_std)
        fig.add_trace(_band(x, control_mean - control_std, control_mean + control_std, "rgba(138,146,166,0.15)", "control"))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=control_mean,
                mode="lines+markers",
                name="control (shuffled labels)",
                legendgroup="control",
                line={"color": MUTED, "dash": "dash"},
                marker={"symbol": "x"},
                hovertemplate="layer %{x}<br>control %{y:.3f}<extra></extra>",
            )
        )
    chance = getattr(result, "chance", None)
    if chance is not None and np.isfinite(chance):
        fig.add_trace(
            go.Scatter(
                x=[x[0], x[-1]],
                y=[chance, chance],
                mode="lines",
                name=f"chance ({chance:.3f})",
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
            name=f"best layer: {result.layer_names[best]}",
            marker={"symbol": "star", "size": 16, "color": "#fab005", "line": {"width": 1, "color": "#1f2430"}},
            text=[f"{mean[best]:.3f}"],
            textposition="top center",
            hoverinfo="skip",
        )
    )
    style_figure(
        fig,
        title=title or f"Linear probe {label} per layer",
        x_title="layer (0 = first extracted layer)",
        y_title=f"held-out {label} ({getattr(result, 'n_folds', 5)}-fold CV)",
        publication=publication,
    )
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=[str(i) for i in x])
    if result.metric == "accuracy":
        fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(hovermode="closest", legend={"orientation": "h", "y": -0.2})
    return fig
