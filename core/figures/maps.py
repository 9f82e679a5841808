"""2-D maps of one layer: points coloured by a label, with hover text and highlights."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.figures.style import ACCENT, CONTINUOUS, color_for, style_figure

MAX_CATEGORIES = 24  # more distinct values than this are grouped as "other" in the legend


def is_continuous(values: np.ndarray) -> bool:
    """Numeric with many distinct values -> continuous colour scale."""
    series = pd.Series(values)
    return pd.api.types.is_numeric_dtype(series) and series.nunique(dropna=True) > 12


def _hover(texts: Sequence[str], labels: pd.DataFrame | None, rows: np.ndarray) -> list[str]:
    lines = []
    for i in rows:
        text = html.escape(str(texts[i]))
        text = text if len(text) <= 90 else text[:87] + "..."
        parts = [f"<b>{text}</b>", f"row {int(i)}"]
        if labels is not None:
            parts += [f"{html.escape(str(c))}: {html.escape(_fmt(labels.iloc[i][c]))}" for c in labels.columns]
        lines.append("<br>".join(parts))
    return lines


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def layer_map(
    coords: np.ndarray,
    *,
    texts: Sequence[str],
    labels: pd.DataFrame | None = None,
    color_by: str | None = None,
    rows: np.ndarray | None = None,
    highlight: np.ndarray | None = None,
    selected: int | None = None,
    neighbours: np.ndarray | None = None,
    region: np.ndarray | None = None,
    title: str = "Layer map",
    subtitle: str | None = None,
    axis_name: str = "PC",
    point_size: int = 6,
    publication: bool = False,
    ranges: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> go.Figure:
    """Scatter (WebGL) of a 2-D projection.

    coords: (n, 2) map of all inputs; `rows` picks the drawn subset (subsample).
    labels: (n, k) table for hover text and colouring; `color_by` one of its columns.
        Colours are assigned over all n inputs, so a category or a value keeps its colour
        whichever rows are drawn (a filter or a subsample).
    highlight: (n,) bool, inputs to emphasise (search matches).
    selected / neighbours: an input and its nearest neighbours in the full space.
    region: rows picked by a box or lasso on the map, outlined.
    subtitle: a second title line (what the drawn rows are filtered by).
    ranges: fixed axis ranges so maps of different layers share a frame.
    Every trace carries the input row in customdata, for click and selection.
    """
    n = len(coords)
    rows = np.arange(n) if rows is None else np.asarray(rows)
    fig = go.Figure()
    values = labels[color_by].to_numpy() if (labels is not None and color_by) else None
    hover = dict(zip(rows.tolist(), _hover(texts, labels, rows)))
    marker = {"size": point_size, "opacity": 0.8, "line": {"width": 0}}
    continuous = values is not None and is_continuous(values)
    if values is None:
        fig.add_trace(_scatter(coords, rows, hover, "inputs", {**marker, "color": ACCENT}))
    elif continuous:
        numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
        fig.add_trace(
            _scatter(
                coords,
                rows,
                hover,
                color_by,
                {
                    **marker,
                    "color": numeric[rows],
                    "colorscale": CONTINUOUS,
                    "cmin": float(np.nanmin(numeric)),
                    "cmax": float(np.nanmax(numeric)),
                    "showscale": True,
                    "colorbar": {"title": {"text": color_by}, "thickness": 14},
                },
                showlegend=False,  # the colour bar names the column; the legend lists only the outlines
            )
        )
    else:
        series = pd.Series(values).astype(str)
        counts = series.value_counts()
        keep = sorted(counts.index[:MAX_CATEGORIES])
        grouped = series.where(series.isin(keep), "other")
        for i, category in enumerate([*keep, *(["other"] if len(counts) > len(keep) else [])]):
            members = rows[grouped.iloc[rows].to_numpy() == category]
            if len(members):
                fig.add_trace(
                    _scatter(coords, members, hover, str(category), {**marker, "color": color_for(i)}, legendgroup=category)
                )
    if highlight is not None and highlight.any():
        hit = np.flatnonzero(highlight)
        fig.add_trace(
            _scatter(
                coords,
                hit,
                {int(i): hover.get(int(i), _hover(texts, labels, [i])[0]) for i in hit},
                f"matches ({len(hit)})",
                {"size": point_size + 6, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#d6336c"}},
            )
        )
    if region is not None and len(region):
        picked = np.asarray(region, dtype=int)
        fig.add_trace(
            _scatter(
                coords,
                picked,
                {int(i): hover.get(int(i), _hover(texts, labels, [i])[0]) for i in picked},
                f"box/lasso selection ({len(picked)})",
                {"size": point_size + 4, "color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": "#1f2430"}},
            )
        )
    if selected is not None:
        if neighbours is not None and len(neighbours):
            fig.add_trace(
                _scatter(
                    coords,
                    np.asarray(neighbours),
                    {int(i): _hover(texts, labels, [i])[0] for i in neighbours},
                    "nearest neighbours",
                    {"size": point_size + 4, "color": "#fab005", "line": {"width": 1, "color": "#1f2430"}},
                )
            )
        fig.add_trace(
            _scatter(
                coords,
                np.array([selected]),
                {int(selected): _hover(texts, labels, [selected])[0]},
                "selected",
                {"size": point_size + 10, "color": "#e03131", "symbol": "star", "line": {"width": 1, "color": "white"}},
            )
        )
    style_figure(fig, title=title, x_title=f"{axis_name} 1", y_title=f"{axis_name} 2", publication=publication)
    if subtitle:
        fig.update_layout(title_subtitle_text=subtitle)
    if continuous:  # the colour bar holds the right edge: the outlines' legend goes in one row above the plot
        legend = {"orientation": "h", "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom", "title": {"text": ""}}
        fig.update_layout(margin_t=110 if subtitle else 90, title_y=0.98, title_yanchor="top")
    else:
        legend = {"title": {"text": color_by or ""}}
        if subtitle:
            fig.update_layout(margin_t=80)
    fig.update_layout(legend={"itemsizing": "constant", **legend}, dragmode="pan", height=620)
    if ranges is not None:
        fig.update_xaxes(range=list(ranges[0]))
        fig.update_yaxes(range=list(ranges[1]))
    return fig


def _scatter(coords, rows, hover, name, marker, legendgroup=None, showlegend=None) -> go.Scattergl:
    rows = np.asarray(rows, dtype=int)
    return go.Scattergl(
        x=coords[rows, 0],
        y=coords[rows, 1],
        mode="markers",
        name=name,
        legendgroup=legendgroup,
        showlegend=showlegend,
        marker=marker,
        customdata=rows,
        hovertext=[hover[int(i)] for i in rows],
        hoverinfo="text",
    )


def shared_ranges(maps: Sequence[np.ndarray], pad: float = 0.05) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis ranges covering every map, so a layer slider keeps one frame."""
    stacked = np.concatenate([np.asarray(m) for m in maps])
    low, high = np.nanmin(stacked, 0), np.nanmax(stacked, 0)
    span = np.maximum(high - low, 1e-9)
    low, high = low - pad * span, high + pad * span
    return (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))


def animated_layer_map(
    maps: Sequence[np.ndarray],
    layer_names: Sequence[str],
    *,
    texts: Sequence[str],
    labels: pd.DataFrame | None = None,
    color_by: str | None = None,
    rows: np.ndarray | None = None,
    title: str = "Layer maps",
    axis_name: str = "PC",
) -> go.Figure:
    """One frame per layer with play/pause and a layer slider (aligned maps, fixed axes)."""
    ranges = shared_ranges(maps)
    frames_data = [
        layer_map(m, texts=texts, labels=labels, color_by=color_by, rows=rows, title=title, axis_name=axis_name).data
        for m in maps
    ]
    fig = layer_map(
        maps[0], texts=texts, labels=labels, color_by=color_by, rows=rows, title=title, axis_name=axis_name, ranges=ranges
    )
    fig.frames = [go.Frame(data=data, name=str(name)) for data, name in zip(frames_data, layer_names)]
    steps = [
        {"args": [[str(name)], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}], "label": str(name), "method": "animate"}
        for name in layer_names
    ]
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "showactive": False,
                "x": 0.0,
                "y": -0.12,
                "xanchor": "left",
                "buttons": [
                    {"label": "Play", "method": "animate", "args": [None, {"frame": {"duration": 700, "redraw": True}, "fromcurrent": True, "transition": {"duration": 300}}]},
                    {"label": "Pause", "method": "animate", "args": [[None], {"frame": {"duration": 0}, "mode": "immediate"}]},
                ],
            }
        ],
        sliders=[{"active": 0, "steps": steps, "x": 0.12, "len": 0.88, "y": -0.08, "currentvalue": {"prefix": "layer: "}}],
        margin={"b": 110},
    )
    return fig
