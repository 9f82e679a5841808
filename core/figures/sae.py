"""SAE figures: training curves, a latent's activation histogram, label association and logit
effects, the map of decoder directions, the paired-correlation histogram of a matching, and
the HTML of a feature card's highlighted examples (token colour intensity = activation).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.analysis.features import FeatureExample, FeatureMatching, FeatureStats, LabelAssociation
from core.analysis.sae import TrainingHistory
from core.figures.style import ACCENT, CONTINUOUS, MUTED, color_for, style_figure

HIGHLIGHT_RGB = (232, 89, 12)  # token highlight colour; its opacity is the activation / the latent's max


def training_curves(history: TrainingHistory, *, title: str = "SAE training", publication: bool = False) -> go.Figure:
    """Loss, L0 and fraction of variance explained (training batches) against tokens seen."""
    x = np.asarray(history.tokens, dtype=float)
    panels = (
        ("loss", "loss (MSE + penalty)", history.loss),
        ("l0", "L0 (active latents per token)", history.l0),
        ("fve", "variance explained (batch)", history.fve),
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.08)
    for i, (name, label, values) in enumerate(panels, start=1):
        fig.add_trace(
            go.Scatter(x=x, y=np.asarray(values, dtype=float), mode="lines", name=label, line={"color": color_for(i - 1)},
                       hovertemplate=f"tokens %{{x:,.0f}}<br>{html.escape(label)} %{{y:.4g}}<extra></extra>"),
            row=1, col=i,
        )
    style_figure(fig, title=title, x_title="training tokens", publication=publication, height=300)
    fig.update_layout(showlegend=False)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="active latents", row=1, col=2)
    fve = np.asarray(history.fve, dtype=float)
    low = float(fve[np.isfinite(fve)].min()) if np.isfinite(fve).any() else 0.0
    fig.update_yaxes(title_text="FVE", range=[min(0.0, low), 1.0], row=1, col=3)
    if history.stopped:
        fig.add_annotation(text=html.escape(history.stopped[:120]), xref="paper", yref="paper", x=0, y=-0.32,
                           showarrow=False, font={"color": "#b42318", "size": 11}, xanchor="left")
    return fig


def activation_histogram(stats: FeatureStats, feature: int, *, title: str | None = None,
                         publication: bool = False, height: int = 220) -> go.Figure:
    """Counts of the latent's non-zero activations on log-spaced bins."""
    counts = stats.hist_counts[feature]
    edges = stats.hist_edges
    nonzero = np.flatnonzero(counts)
    fig = go.Figure()
    if nonzero.size:
        lo, hi = nonzero[0], nonzero[-1] + 1
        centres = np.sqrt(edges[lo:hi] * edges[lo + 1 : hi + 1])
        fig.add_trace(go.Bar(
            x=centres, y=counts[lo:hi], width=np.diff(edges[lo : hi + 1]) * 0.95, marker_color=ACCENT,
            customdata=np.stack([edges[lo:hi], edges[lo + 1 : hi + 1]], axis=1),
            hovertemplate="activation %{customdata[0]:.3g}-%{customdata[1]:.3g}<br>%{y} tokens<extra></extra>",
            name="tokens",
        ))
    style_figure(fig, title=title or f"Feature {feature}: activations when active", x_title="activation (log scale)",
                 y_title="tokens", publication=publication, height=height)
    fig.update_xaxes(type="log", tickformat=".2~g", dtick="D2")
    fig.update_layout(showlegend=False, margin={"l": 50, "r": 10, "t": 40, "b": 45})
    return fig


def label_association_figure(association: LabelAssociation, feature: int, *, title: str | None = None,
                             publication: bool = False, height: int = 220) -> go.Figure:
    """Firing rate of the latent on each label value, against its overall firing rate."""
    fig = go.Figure()
    if association.kind == "categorical":
        fires = association.fires_per_value[feature].astype(float)
        tokens = association.tokens_per_value.astype(float)
        rate = np.divide(fires, tokens, out=np.zeros_like(fires), where=tokens > 0)
        base = fires.sum() / tokens.sum() if tokens.sum() else 0.0
        fig.add_trace(go.Bar(x=list(association.values), y=rate, marker_color=[color_for(i) for i in range(len(rate))],
                             hovertemplate="%{x}: fires on %{y:.1%} of its tokens<extra></extra>", name="firing rate"))
        fig.add_hline(y=base, line={"color": MUTED, "dash": "dash"}, annotation_text="all tokens",
                      annotation_position="top left")
        y_title = "firing rate"
    else:
        r = association.correlation[feature]
        fig.add_trace(go.Bar(x=[association.column], y=[0.0 if np.isnan(r) else r], marker_color=ACCENT,
                             hovertemplate="Pearson r = %{y:.3f}<extra></extra>", name="correlation"))
        fig.update_yaxes(range=[-1, 1])
        y_title = "Pearson r with the label"
    style_figure(fig, title=title or f"Feature {feature} by {association.column}", x_title=association.column,
                 y_title=y_title, publication=publication, height=height)
    fig.update_layout(showlegend=False, margin={"l": 50, "r": 10, "t": 40, "b": 45})
    if association.kind == "categorical":
        fig.update_yaxes(tickformat=".0%")
    return fig


def logit_effects_figure(promoted: Sequence[tuple[str, float]], suppressed: Sequence[tuple[str, float]], *,
                         feature: int, title: str | None = None, publication: bool = False,
                         height: int = 300) -> go.Figure:
    """Horizontal bars: the tokens the latent's decoder direction promotes (right) and suppresses (left)."""
    items = sorted([*suppressed, *promoted], key=lambda t: t[1])  # bottom: most suppressed; top: most promoted
    labels = [repr(t) for t, _ in items]
    values = [v for _, v in items]
    fig = go.Figure(go.Bar(
        x=values, y=list(range(len(items))), orientation="h",
        marker_color=[color_for(0) if v >= 0 else color_for(5) for v in values],
        customdata=labels, hovertemplate="%{customdata}: %{x:.3f}<extra></extra>", name="logit effect",
    ))
    style_figure(fig, title=title or f"Feature {feature}: logit effects", x_title="logit change per unit activation",
                 y_title=None, publication=publication, height=height)
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(items))), ticktext=labels, showgrid=False,
                     tickfont={"family": "ui-monospace, Menlo, monospace", "size": 11})
    fig.update_layout(showlegend=False, margin={"l": 20, "r": 10, "t": 40, "b": 45})
    return fig


def feature_map(coords: np.ndarray, stats: FeatureStats | None, *, method: str = "PCA", selected: int | None = None,
                title: str | None = None, hover: Sequence[str] | None = None, publication: bool = False) -> go.Figure:
    """Scatter of the latents' decoder directions in 2-D, coloured by log10 firing density; customdata = latent id."""
    n = coords.shape[0]
    ids = np.arange(n)
    density = stats.density if stats is not None else np.zeros(n)
    colour = np.log10(np.clip(density, 1e-6, None))
    text = list(hover) if hover is not None else [f"feature {i}" for i in ids]
    fig = go.Figure(go.Scattergl(
        x=coords[:, 0], y=coords[:, 1], mode="markers", customdata=ids,
        marker={"size": 5, "color": colour, "colorscale": CONTINUOUS, "opacity": 0.8,
                "colorbar": {"title": {"text": "log10 density", "side": "right"}}},
        text=text, hovertemplate="%{text}<extra></extra>", name="features",
    ))
    if selected is not None and 0 <= selected < n:
        fig.add_trace(go.Scattergl(
            x=[coords[selected, 0]], y=[coords[selected, 1]], mode="markers", name=f"feature {selected}",
            marker={"size": 14, "color": "rgba(0,0,0,0)", "line": {"color": "#d6336c", "width": 2.5}},
            customdata=[selected], hoverinfo="skip",
        ))
    style_figure(fig, title=title or f"Feature map: {method} of the decoder directions (cosine)",
                 x_title=f"{method} 1", y_title=f"{method} 2", publication=publication, height=420)
    fig.update_layout(showlegend=False)
    return fig


def density_histogram(stats: FeatureStats, *, title: str = "Feature density", publication: bool = False) -> go.Figure:
    """Histogram over latents of log10 firing density (dead latents counted apart in the title)."""
    alive = stats.density[stats.density > 0]
    fig = go.Figure(go.Histogram(x=np.log10(alive), nbinsx=40, marker_color=ACCENT, name="latents",
                                 hovertemplate="log10 density %{x}<br>%{y} latents<extra></extra>"))
    dead = int(stats.dead.sum())
    style_figure(fig, title=f"{title} ({dead} of {stats.n_features} latents never fire)",
                 x_title="log10 fraction of tokens where the latent fires", y_title="latents",
                 publication=publication, height=260)
    fig.update_layout(showlegend=False)
    return fig


def matching_figure(result: FeatureMatching, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """Histograms of the paired correlations and of one random pairing, with both means marked."""
    paired = result.correlation[np.isfinite(result.correlation)]
    random = result.random_correlation[np.isfinite(result.random_correlation)]
    bins = {"start": -1.0, "end": 1.0, "size": 0.04}
    lan = result.variant == "lan2024"  # their baseline shuffles the pairs; their r uses the sample std
    baseline = "shuffled pairs" if lan else "random pairing"
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=paired, xbins=bins, name="best-correlated pair", marker_color=color_for(0),
                               opacity=0.75, hovertemplate="r %{x}<br>%{y} latents<extra></extra>"))
    fig.add_trace(go.Histogram(x=random, xbins=bins, name=baseline, marker_color=MUTED, opacity=0.6,
                               hovertemplate="r %{x}<br>%{y} latents<extra></extra>"))
    fig.add_vline(x=result.mean_paired, line={"color": color_for(0), "dash": "dash"},
                  annotation_text=f"mean {result.mean_paired:.3f}", annotation_position="top left")
    fig.add_vline(x=result.mean_random, line={"color": MUTED, "dash": "dot"},
                  annotation_text=f"{baseline} {result.mean_random:.3f}", annotation_position="top right")
    style_figure(fig, title=title or f"Paired feature correlations ({result.level}, n={result.n_rows:,})",
                 x_title="r of the activations (Lan et al. 2024 conventions)" if lan else "Pearson r of the activations",
                 y_title="features of B", publication=publication, height=320)
    fig.update_layout(barmode="overlay")
    return fig


# ----- HTML for feature cards ----------------------------------------------------------------------
def highlighted_tokens_html(example: FeatureExample, scale: float) -> str:
    """One example as HTML: each token's background opacity = activation / scale; the focus token outlined."""
    parts = []
    scale = scale if scale > 0 else 1.0
    for i, (token, value) in enumerate(zip(example.tokens, example.activations)):
        alpha = float(np.clip(value / scale, 0.0, 1.0))
        r, g, b = HIGHLIGHT_RGB
        style = f"background: rgba({r},{g},{b},{alpha:.2f}); border-radius: 3px; padding: 0 1px;"
        if i == example.focus:
            style += " outline: 1.5px solid #1f2430;"
        shown = html.escape(token).replace("\n", "⏎")
        parts.append(f"<span title='{value:.3f}' style='{style}'>{shown}</span>")
    return (
        "<div style='font-family: ui-monospace, Menlo, monospace; font-size: 0.82rem; line-height: 1.7; "
        f"white-space: pre-wrap; margin: 2px 0;'>{''.join(parts)}"
        f"<span style='color: #8a92a6; font-size: 0.72rem;'>  {example.activation:.2f}</span></div>"
    )


def examples_html(examples: Sequence[FeatureExample], scale: float) -> str:
    """Several examples, one per line."""
    return "".join(highlighted_tokens_html(e, scale) for e in examples)


def token_chips_html(tokens: Sequence[tuple[str, float]], *, positive: bool = True) -> str:
    """Tokens as small chips (logit effects in a card)."""
    colour = "#e7f0ff" if positive else "#fdecea"
    return " ".join(
        f"<span style='background:{colour}; border-radius: 4px; padding: 0 4px; font-family: ui-monospace, monospace; "
        f"font-size: 0.78rem;' title='{v:+.3f}'>{html.escape(repr(t))}</span>"
        for t, v in tokens
    )
