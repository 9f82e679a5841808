"""One look for every figure: fonts, colours, margins; and the publication style.

Screen style: the dashboard's theme. Publication style (`publication=True`):
white background, larger fonts, the Okabe-Ito colour-blind-safe palette.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

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


def compact_layer_names(names: Sequence[str]) -> list[str]:
    """Short tick labels for an axis of layers (hover keeps the full names).

    The dotted prefix all names share is dropped, then blocks "stem.N" of the stem most names
    use become "N": "model.embed_tokens", "model.layers.12" -> "embed_tokens", "12";
    "embeddings", "encoder.layer.0" -> "embeddings", "0". Other names are left as they are.
    """
    parts = [name.split(".") for name in names]
    shared = 0
    while all(len(p) > shared + 1 for p in parts) and len({p[shared] for p in parts}) == 1:
        shared += 1
    tails = [".".join(p[shared:]) for p in parts]
    stems = Counter(tail.rsplit(".", 1)[0] for tail in tails if re.fullmatch(r".+\.\d+", tail))
    if not stems:
        return tails
    stem, count = stems.most_common(1)[0]
    if count * 2 < len(tails):
        return tails
    return [tail[len(stem) + 1 :] if re.fullmatch(re.escape(stem) + r"\.\d+", tail) else tail for tail in tails]


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
        title={"text": title, "x": 0.0, "xanchor": "left", "pad": {"l": 10}, "font": {"size": size + 3}},
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
