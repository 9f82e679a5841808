"""The depth axis of figures that draw one value per layer: x positions, a curve, its spread band, the layout.

Geometry curves, one input's curvature, the logit lens' KL and probe scores all put layers
on x (the layer index, or relative depth so that models of different depth line up), draw
a value per layer as a line with markers and its spread over inputs, folds or positions as
a filled band behind it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.figures.style import style_figure

RELATIVE_DEPTH_TITLE = "relative depth (0 = embeddings, 1 = last layer)"
LAYER_TITLE = "layer (0 = first extracted layer)"


def depth_axis(n_layers: int, *, relative_depth: bool) -> np.ndarray:
    """(n_layers,) x positions: i / (n - 1) on the relative-depth axis, else 0..n-1."""
    index = np.arange(n_layers, dtype=float)
    if relative_depth:
        return index / (n_layers - 1) if n_layers > 1 else index
    return index


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def band(x, low, high, *, color: str, group: str, name: str, alpha: float = 0.18) -> go.Scatter:
    """A filled band between `low` and `high` in `color` (hex) behind the curve of legend group `group`.

    Layers where either bound is NaN are dropped: the band has a gap there, as the curve has.
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    ok = np.isfinite(low) & np.isfinite(high)
    x, low, high = np.asarray(x)[ok], low[ok], high[ok]
    return go.Scatter(
        x=[*x, *x[::-1]],
        y=[*high, *low[::-1]],
        mode="lines",
        fill="toself",
        fillcolor=_rgba(color, alpha),
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        name=name,
        legendgroup=group,
    )


def curve(x, y, *, name: str, color: str, dash: str = "solid", width: float = 2.5, **trace: Any) -> go.Scatter:
    """A value per layer as a line with markers; NaN layers stay gaps, never interpolated.

    trace: further go.Scatter properties (legendgroup, marker, customdata, hovertemplate).
    """
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, connectgaps=False,
                      line={"color": color, "width": width, "dash": dash}, **trace)


def style_depth_figure(
    fig: go.Figure, *, title: str, y_title: str, relative_depth: bool, publication: bool, legend_y: float = -0.22
) -> go.Figure:
    """The shared style with the depth axis' title and a horizontal legend under the plot."""
    style_figure(
        fig,
        title=title,
        x_title=RELATIVE_DEPTH_TITLE if relative_depth else LAYER_TITLE,
        y_title=y_title,
        publication=publication,
    )
    fig.update_layout(hovermode="closest", legend={"orientation": "h", "y": legend_y})
    return fig
