"""Geometry figures: metric curves per layer, one input's token trajectory and its curvature per layer.

Curvature is computed in radians (core.analysis.geometry) and drawn in degrees. The
logit-lens figures live in core.figures.lens and are importable from here too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from core.analysis.geometry import METRIC_UNITS, GeometryBands, GeometryResult, turning_angles
from core.figures.depth import LAYER_TITLE, RELATIVE_DEPTH_TITLE, band, curve, depth_axis, style_depth_figure
from core.figures.lens import kl_curve, lens_heatmap, token_label
from core.figures.style import ACCENT, CONTINUOUS, MUTED, color_for, style_figure

__all__ = [
    "LAYER_TITLE",
    "METRIC_TITLES",
    "RELATIVE_DEPTH_TITLE",
    "curvature_by_layer_figure",
    "depth_axis",
    "display_unit",
    "geometry_curves",
    "in_display_units",
    "kl_curve",
    "lens_heatmap",
    "metric_variant",
    "trajectory_figure",
]

METRIC_TITLES = {
    "curvature": "Trajectory curvature",
    "intrinsic_dimension": "Intrinsic dimension",
    "dataset_entropy": "Dataset entropy",
    "prompt_entropy": "Prompt entropy",
    "effective_rank": "Effective rank",
    "anisotropy_mean_cosine": "Anisotropy (mean cosine)",
    "anisotropy_top_eigenvalue_share": "Anisotropy (top eigenvalue share)",
}


# ----- units and legends ---------------------------------------------------------------
def in_display_units(metric: str, values) -> np.ndarray:
    """Values as drawn: curvature in degrees, everything else unchanged."""
    values = np.asarray(values, dtype=float)
    return np.degrees(values) if metric == "curvature" else values


def display_unit(metric: str) -> str:
    return "degrees" if metric == "curvature" else METRIC_UNITS.get(metric, "")


def metric_variant(result: GeometryResult, metric: str) -> str | None:
    """The convention a metric was computed with, as shown in legends ("signed", "TwoNN", "skean, α=1").

    Options a result predates read as their defaults (entropy "exact", curvature steps "skip").
    """
    p = result.params
    if metric == "curvature":
        name = {"signed": "signed (Hosseini)", "abs": "abs (Skean)"}.get(p.get("curvature_variant"), None)
        if name and p.get("curvature_degenerate", "skip") == "zero":
            name += ", zero-length steps = 0"
        return name
    if metric == "intrinsic_dimension":
        method = p.get("id_method")
        if method == "twonn":
            return f"TwoNN, lowest {p.get('id_fraction', 0.9):.0%} of μ"
        return "MLE" if method == "mle" else None
    if metric in ("dataset_entropy", "prompt_entropy") and "entropy_alpha" in p:
        skean = "skean, " if p.get("entropy_variant", "exact") == "skean" else ""  # exact: the default, unnamed
        return f"{skean}α={p['entropy_alpha']:g}" + ("" if p.get("entropy_normalize", True) else ", nats")
    return None


# ----- geometry curves ------------------------------------------------------------------
def geometry_curves(
    results: Mapping[str, GeometryResult],
    metric: str,
    *,
    relative_depth: bool = True,
    controls: Collection[str] = (),
    bands: Mapping[str, GeometryBands] | None = None,
    title: str | None = None,
    publication: bool = False,
) -> go.Figure:
    """One geometry metric against depth, one line per result, with its interquartile band.

    results: legend name (e.g. "smollm2", "smollm2 (untrained)") -> GeometryResult; the
        metric's variant (curvature sign convention, ID estimator, entropy order; see
        `metric_variant`) is added to the legend from the result's params unless the name
        already holds it (two variants of one run: name them with `metric_variant`).
    metric: a result metric name, e.g. "curvature", "intrinsic_dimension".
    relative_depth: x = i / (L - 1), so models of different depth line up; else the layer index.
    controls: names drawn dashed (e.g. the untrained twin).
    bands: legend name -> GeometryBands (core.analysis.geometry.bootstrap): the dataset-level
        metrics of those curves get their band over resampled inputs, named in the legend
        (e.g. "95% bootstrap interval over inputs, 50 resamples").
    Per-input metrics (curvature, prompt entropy) get a q25..q75 band over inputs;
    NaN layers (undefined values) are gaps, never interpolated.
    """
    if not results:
        raise ValueError("results is empty; pass at least one GeometryResult")
    fig = go.Figure()
    unit = display_unit(metric)
    for i, (name, result) in enumerate(results.items()):
        if metric not in result.metrics:
            raise ValueError(f"metric={metric!r} is not in result {name!r}; it has {', '.join(result.metrics)}")
        color = color_for(i)
        variant = metric_variant(result, metric)
        label = f"{name} · {variant}" if variant and variant not in name else name
        n = len(result.layer_names)
        x = depth_axis(n, relative_depth=relative_depth)
        mean = in_display_units(metric, result.mean[metric])
        q25 = in_display_units(metric, result.q25[metric])
        q75 = in_display_units(metric, result.q75[metric])
        if np.isfinite(q25).any():
            fig.add_trace(band(x, q25, q75, color=color, group=label, name=f"{label} (interquartile)"))
        resampled = (bands or {}).get(name)
        if resampled is not None and metric in resampled.metrics:
            fig.add_trace(band(x, resampled.low[metric], resampled.high[metric], color=color, group=label,
                               name=f"{label}: {resampled.name(metric)}").update(showlegend=True))
        custom = np.stack(
            [np.array(result.layer_names, dtype=object), np.arange(n), q25, q75], axis=1
        )
        spread = "<br>interquartile %{customdata[2]:.3g} – %{customdata[3]:.3g}" if np.isfinite(q25).any() else ""
        fig.add_trace(
            curve(
                x,
                mean,
                name=label,
                color=color,
                dash="dash" if name in controls else "solid",
                legendgroup=label,
                marker={"size": 5},
                customdata=custom,
                hovertemplate=(
                    f"<b>{html.escape(label)}</b><br>layer %{{customdata[1]}} · %{{customdata[0]}}<br>"
                    f"{metric} %{{y:.4g}} {unit}" + spread + "<extra></extra>"
                ),
            )
        )
    style_depth_figure(
        fig,
        title=title or f"{METRIC_TITLES.get(metric, metric)} by layer",
        y_title=f"{metric.replace('_', ' ')} ({unit})" if unit else metric.replace("_", " "),
        relative_depth=relative_depth,
        publication=publication,
    )
    if relative_depth:
        fig.update_xaxes(range=[-0.02, 1.02])
    return fig


# ----- one input's trajectory -----------------------------------------------------------
def inward_text_positions(coords: np.ndarray) -> list[str]:
    """A plotly textposition per point that puts its label on the side facing the middle of the picture.

    coords: (n, 2). Points in the upper half get their label below them, points in the left
    half to their right, so that a label of a point at the edge (often the first token, far
    from the rest) is drawn inside the plot area rather than cut at its border.
    """
    coords = np.asarray(coords, dtype=float)
    if len(coords) == 0:
        return []
    middle = (coords.min(axis=0) + coords.max(axis=0)) / 2  # (2,) centre of the bounding box
    vertical = np.where(coords[:, 1] > middle[1], "bottom", "top")
    horizontal = np.where(coords[:, 0] < middle[0], "right", "left")
    return [f"{v} {h}" for v, h in zip(vertical, horizontal)]


def trajectory_figure(
    token_vectors: np.ndarray,
    tokens: Sequence[str],
    *,
    layer: str,
    variant: str = "signed",
    skip_first: bool = False,
    title: str | None = None,
    publication: bool = False,
) -> go.Figure:
    """One input's token trajectory at one layer, in the 2-D PCA plane of its own tokens.

    token_vectors: (T, d) the input's token vectors at `layer`; tokens: (T,) their text.
    Steps are drawn as arrows in token order, points labelled with their token (on the side
    facing the middle, so that labels at the edges stay inside) and coloured by position.
    Hover shows the turning angle at each interior token in degrees, measured in the full
    d-dimensional space (angles in the 2-D picture can differ: PCA is a projection); the
    title's curvature is their mean, as in the metric.
    skip_first: leave the first token out of the PCA and the picture (not out of the
        angles). Trained causal LMs give it "massive activations" (attention sink) that
        otherwise fill the first component and squash every other token to a dot.
    """
    X = np.asarray(token_vectors, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(tokens):
        raise ValueError(f"token_vectors must be (T, d) with T = len(tokens) = {len(tokens)}; got {X.shape}")
    T = len(X)
    angles = np.full(T, np.nan)
    if T >= 3:
        angles[1:-1] = np.degrees(turning_angles(X, variant=variant))  # angle at token j: steps j-1 -> j -> j+1
    mean_angle = float(np.nanmean(angles)) if np.isfinite(angles).any() else float("nan")
    shown = np.arange(1 if skip_first and T > 1 else 0, T)  # positions drawn
    centred = X[shown] - X[shown].mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    coords = np.zeros((len(shown), 2))
    coords[:, :k] = centred @ vt[:k].T  # (shown, 2)
    variance = s**2
    share = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    share = np.pad(share, (0, 2 - len(share)))
    angle_text = ["—" if not math.isfinite(a) else f"{a:.1f}°" for a in angles]
    hover = [f"<b>{token_label(tokens[j])}</b><br>position {j}<br>turning angle {angle_text[j]}" for j in shown]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="lines",
            line={"color": MUTED, "width": 1},
            hoverinfo="skip",
            showlegend=False,
            name="path",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="markers+text",
            name="tokens",
            showlegend=False,
            text=[token_label(tokens[j]) for j in shown],
            textposition=inward_text_positions(coords),
            textfont={"size": 11},
            marker={
                "size": 10,
                "color": shown,
                "colorscale": CONTINUOUS,
                "showscale": True,
                "colorbar": {"title": {"text": "token position"}, "thickness": 12},
                "line": {"width": 1, "color": "white"},
            },
            hovertext=hover,
            hoverinfo="text",
            customdata=np.stack([shown, angles[shown]], axis=1),
        )
    )
    for j in range(len(shown) - 1):  # arrows: token order
        fig.add_annotation(
            x=coords[j + 1, 0], y=coords[j + 1, 1], ax=coords[j, 0], ay=coords[j, 1],
            xref="x", yref="y", axref="x", ayref="y",
            showarrow=True, arrowhead=2, arrowsize=1.1, arrowwidth=1.4, arrowcolor=ACCENT, standoff=6, text="",
        )
    summary = f"curvature {mean_angle:.1f}°" if math.isfinite(mean_angle) else "curvature undefined (< 3 tokens)"
    if len(shown) < T:
        summary += " · first token not drawn"
    style_figure(
        fig,
        title=title or f"Token trajectory at {layer} · {summary}",
        x_title=f"PC 1 ({share[0]:.0%} of this input's variance)",
        y_title=f"PC 2 ({share[1]:.0%} of this input's variance)",
        publication=publication,
    )
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(hovermode="closest")
    return fig


def curvature_by_layer_figure(
    layer_names: Sequence[str],
    curvature_rad: Sequence[float],
    *,
    input_label: str = "this input",
    reference: GeometryResult | None = None,
    relative_depth: bool = False,
    title: str | None = None,
    publication: bool = False,
) -> go.Figure:
    """Curvature (degrees) of one input's trajectory at each layer.

    curvature_rad: (L,) radians, NaN where undefined (fewer than 3 tokens).
    reference: the run's GeometryResult with "curvature", drawn as the dataset mean and
        interquartile band for context.
    """
    values = in_display_units("curvature", curvature_rad)
    if len(values) != len(layer_names):
        raise ValueError(f"curvature_rad has {len(values)} values for {len(layer_names)} layers")
    x = depth_axis(len(layer_names), relative_depth=relative_depth)
    fig = go.Figure()
    if reference is not None and "curvature" in reference.metrics:
        rx = depth_axis(len(reference.layer_names), relative_depth=relative_depth)
        q25 = in_display_units("curvature", reference.q25["curvature"])
        q75 = in_display_units("curvature", reference.q75["curvature"])
        fig.add_trace(band(rx, q25, q75, color=MUTED, group="all inputs", name="all inputs (interquartile)"))
        fig.add_trace(
            go.Scatter(
                x=rx,
                y=in_display_units("curvature", reference.mean["curvature"]),
                mode="lines",
                name="all inputs (mean, interquartile band)",
                legendgroup="all inputs",
                line={"color": MUTED, "dash": "dash"},
                hovertemplate="all inputs: %{y:.1f}°<extra></extra>",
            )
        )
    fig.add_trace(
        curve(
            x,
            values,
            name=input_label,
            color=ACCENT,
            customdata=np.array(layer_names, dtype=object),
            hovertemplate="%{customdata}<br>curvature %{y:.1f}°<extra></extra>",
        )
    )
    return style_depth_figure(
        fig,
        title=title or "Curvature of this input's trajectory by layer",
        y_title="curvature (degrees)",
        relative_depth=relative_depth,
        publication=publication,
    )
