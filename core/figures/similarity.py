"""Comparing two models: a layer-by-layer similarity heatmap and per-layer curves on relative depth."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from core.analysis.similarity import NullResult, SimilarityResult, best_match_per_layer
from core.figures.style import CONTINUOUS, color_for, compact_layer_names, style_figure


def _cell_text(result: SimilarityResult, null: NullResult | None = None) -> list[list[str]]:
    """Hover text per cell: both layers and the value, or why it is undefined; with `null`, its mean and p."""
    out = []
    for i, la in enumerate(result.layers_a):
        row = []
        for j, lb in enumerate(result.layers_b):
            value = result.matrix[i, j]
            shown = f"{value:.4f}" if np.isfinite(value) else f"undefined: {result.reason_at(i, j) or 'NaN'}"
            text = f"A: {html.escape(la)}<br>B: {html.escape(lb)}<br>{html.escape(result.label)}: {html.escape(shown)}"
            if null is not None and np.isfinite(null.p_value[i, j]):
                text += (f"<br>null mean {null.null_mean[i, j]:.4f} ± {null.null_std[i, j]:.4f}"
                         f"<br>p = {null.p_value[i, j]:.3g} ({null.n_permutations} permutations)")
            row.append(text)
        out.append(row)
    return out


def _null_marks(fig: go.Figure, null: NullResult, alpha: float) -> None:
    """A grey x on every cell whose value is not above the permutation null (p >= alpha), with a legend entry."""
    with np.errstate(invalid="ignore"):
        rows, cols = np.nonzero(null.p_value >= alpha)
    fig.add_trace(
        go.Scatter(
            x=cols, y=rows, mode="markers", hoverinfo="skip", showlegend=True,
            name=f"not above the permutation null (p ≥ {alpha:g}, {null.n_permutations} permutations of B's rows)",
            marker={"symbol": "x-thin", "size": 12, "color": "#8a8f98", "line": {"width": 2, "color": "#8a8f98"}},
            unselected={"marker": {"opacity": 1.0}},
        )
    )
    fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.25, "x": 0})


def _rows_note(result: SimilarityResult) -> str:
    """The colour bar's note when the matrices compared had one row per token (rows of inputs need none)."""
    return " · token rows" if result.info.get("rows") == "tokens" else ""


def similarity_heatmap(
    result: SimilarityResult,
    *,
    trace_best: bool = True,
    title: str | None = None,
    publication: bool = False,
    selected: Sequence[str] | None = None,
    fit_colours: bool = False,
    null: NullResult | None = None,
    alpha: float = 0.05,
) -> go.Figure:
    """Heatmap of `result.matrix`: run A's layers on y (first layer at the bottom), run B's on x.

    The colour bar is titled with the metric and its variant. With `trace_best`, the best B layer
    for each A layer (highest similarity; lowest for a distance) is drawn as a line of markers.
    `selected` (layer of A, layer of B) outlines that cell; a result over token rows says so in
    the colour bar title. The colour scale spans the metric's
    range (comparable across pairs), or with `fit_colours` the matrix's own values (contrast for
    small values such as mutual k-NN). NaN cells are left blank; their hover text gives the reason.
    With `null` (a NullResult of the same matrix) cells with p >= `alpha` carry a grey x and the
    hover gives the null mean, its std and p.
    """
    model_a, model_b = result.info.get("model_a", "A"), result.info.get("model_b", "B")
    x, y = np.arange(len(result.layers_b)), np.arange(len(result.layers_a))
    finite = result.matrix[np.isfinite(result.matrix)]
    if result.metric == "orthogonal_procrustes_distance":
        zmin, zmax, reverse, suffix = 0.0, 2.0, True, " (lower = more similar)"
    elif result.metric in ("debiased_cka", "rsa"):  # can be below 0
        zmin, zmax, reverse, suffix = min(0.0, float(finite.min()) if finite.size else 0.0), 1.0, False, ""
    else:
        zmin, zmax, reverse, suffix = 0.0, 1.0, False, ""
    if fit_colours and finite.size and finite.max() > finite.min():
        zmin, zmax = float(finite.min()), float(finite.max())
    fig = go.Figure(
        go.Heatmap(
            z=result.matrix,
            x=x,
            y=y,
            zmin=zmin,
            zmax=zmax,
            colorscale=CONTINUOUS,
            reversescale=reverse,
            text=_cell_text(result, null),
            hovertemplate="%{text}<extra></extra>",
            colorbar={"title": {"text": result.label + _rows_note(result) + suffix, "side": "right"}},
            name=result.label,
        )
    )
    # heatmap cells cannot be selected in plotly: an invisible marker per cell makes a click
    # on a cell a selection event carrying its two layer names
    grid_x, grid_y = np.meshgrid(x, y)
    cell_text = np.asarray(_cell_text(result, null), dtype=object)
    fig.add_trace(
        go.Scatter(
            x=grid_x.ravel(),
            y=grid_y.ravel(),
            mode="markers",
            name="cells",
            showlegend=False,
            marker={"symbol": "square", "size": 28, "color": "rgba(0,0,0,0)"},
            customdata=np.stack(
                [np.array(result.layers_a, dtype=object)[grid_y.ravel()],
                 np.array(result.layers_b, dtype=object)[grid_x.ravel()]], axis=1
            ),
            text=cell_text.ravel(),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    if trace_best:
        best = best_match_per_layer(result)
        rows = np.flatnonzero(best >= 0)
        fig.add_trace(
            go.Scatter(
                x=best[rows],
                y=rows,
                mode="lines+markers",
                name=f"best match in {model_b}",
                showlegend=False,  # named in the x-axis title: a legend collides with long titles or ticks
                line={"color": "white", "width": 1.5},
                marker={"color": "white", "size": 8, "symbol": "circle", "line": {"color": "#1f2430", "width": 1}},
                unselected={"marker": {"opacity": 1.0}},  # stay visible when a cell is clicked (selected)
                customdata=np.stack(
                    [np.array(result.layers_a, dtype=object)[rows], np.array(result.layers_b, dtype=object)[best[rows]],
                     result.matrix[rows, best[rows]]],
                    axis=1,
                ) if rows.size else None,
                hovertemplate="A: %{customdata[0]}<br>best B: %{customdata[1]}<br>%{customdata[2]:.4f}<extra></extra>",
            )
        )
    if null is not None:
        _null_marks(fig, null, alpha)
    if selected is not None and selected[0] in result.layers_a and selected[1] in result.layers_b:
        i, j = result.layers_a.index(selected[0]), result.layers_b.index(selected[1])
        fig.add_trace(
            go.Scatter(
                x=[j], y=[i], mode="markers", name="selected cell", showlegend=False, hoverinfo="skip",
                marker={"symbol": "square-open", "size": 22, "color": "#e8590c", "line": {"width": 3}},
                unselected={"marker": {"opacity": 1.0}},
            )
        )
    unit = result.info.get("rows", "inputs")
    subsample = f", {result.n} of {result.n_inputs} {unit}" if result.n < result.n_inputs else f", {result.n} {unit}"
    style_figure(
        fig,
        title=title or f"{result.label}: {model_a} vs {model_b}{subsample}",
        x_title=f"{model_b} layer (B)" + ("; circles: best match for each A layer" if trace_best else ""),
        y_title=f"{model_a} layer (A)",
        publication=publication,
    )
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=compact_layer_names(result.layers_b), showgrid=False,
                     range=[-0.5, len(x) - 0.5])
    fig.update_yaxes(tickmode="array", tickvals=y, ticktext=compact_layer_names(result.layers_a), showgrid=False,
                     range=[-0.5, len(y) - 0.5])
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(automargin=True)
    return fig


def relative_depth(n_layers: int) -> np.ndarray:
    """(n_layers,) positions in [0, 1]: 0 = first layer, 1 = last (a single layer sits at 0)."""
    return np.linspace(0.0, 1.0, n_layers) if n_layers > 1 else np.zeros(n_layers)


def relative_depth_curves(
    curves: Mapping[str, tuple[Sequence[str], Sequence[float]]],
    y_title: str,
    title: str,
    *,
    publication: bool = False,
) -> go.Figure:
    """Per-layer curves of several models on one relative-depth axis.

    curves: model name -> (layer names, one value per layer), layers in model order.
    """
    fig = go.Figure()
    for k, (model, (layers, values)) in enumerate(curves.items()):
        layers, values = list(layers), np.asarray(values, dtype=np.float64)
        if len(layers) != len(values):
            raise ValueError(f"curve {model!r} has {len(layers)} layer names but {len(values)} values")
        fig.add_trace(
            go.Scatter(
                x=relative_depth(len(layers)),
                y=values,
                mode="lines+markers",
                name=model,
                line={"color": color_for(k), "width": 2.5},
                customdata=np.stack([np.array(layers, dtype=object), np.arange(len(layers))], axis=1),
                hovertemplate=(
                    f"{html.escape(model)}<br>layer %{{customdata[1]}} · %{{customdata[0]}}<br>"
                    "depth %{x:.2f}<br>%{y:.4g}<extra></extra>"
                ),
            )
        )
    style_figure(
        fig,
        title=title,
        x_title="relative depth (0 = first layer, 1 = last)",
        y_title=y_title,
        publication=publication,
    )
    fig.update_xaxes(range=[-0.03, 1.03])
    fig.update_layout(hovermode="closest", legend={"orientation": "h", "y": -0.2})
    return fig
