"""One look for every figure: fonts, colours, margins; and the publication style.

Screen style: the dashboard's theme. Publication style (`publication=True`):
white background, larger fonts, the Okabe-Ito colour-blind-safe palette.
"""

from __future__ import annotations

import plotly.graph_objects as go

# Okabe & Ito (2008), colour-blind safe; extended with Tableau-like tones for >8 classes
PALETTE = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#7F7F7F", "#8C564B", "#9467BD", "#17BECF", "#BCBD22", "#1F77B4", "#FF9896", "#98DF8A",
]
CONTINUOUS = "Viridis"
DIVERGING = "RdBu_r"
ACCENT = "#3b5bdb"
MUTED = "#8a92a6"
FONT = "Inter, Helvetica Neue, Arial, sans-serif"


def color_for(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def style_figure(
    fig: go.Figure,
    *,
    title: str,
    x_title: str | None = None,
    y_title: str | None = None,
    publication: bool = False,
    height: int | None = None,
) -> go.Figure:
    """Apply the shared layout: title, axis titles, fonts, margins, legend."""
    size = 16 if publication else 13
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "font": {"size": size + 3}},
        font={"family": FONT, "size": size, "color": "#1f2430"},
        template="plotly_white",
        paper_bgcolor="white",
        plot_bgcolor="white" if publication else "#fbfcfe",
        margin={"l": 60, "r": 20, "t": 60, "b": 55},
        legend={"bgcolor": "rgba(255,255,255,0.85)", "borderwidth": 0},
        hoverlabel={"font": {"family": FONT}},
        colorway=PALETTE,
    )
    if height:
        fig.update_layout(height=height)
    grid = "#e6e9f0"
    fig.update_xaxes(title_text=x_title, gridcolor=grid, zerolinecolor=grid, showline=True, linecolor="#c5cad6")
    fig.update_yaxes(title_text=y_title, gridcolor=grid, zerolinecolor=grid, showline=True, linecolor="#c5cad6")
    return fig
