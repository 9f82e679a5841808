"""Intervention figures: steering (continuations, probe readout, KL, tokens per alpha) and erasure (probes before/after).

Every figure takes a record of core/interventions/records.py (SteeringResult or ErasureResult)
and says in its legend and axes what was done: the direction, its layer, the alphas (in units
of the layer's mean activation norm), the probe, the erasure method.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.figures.depth import band, curve
from core.figures.lens import token_label
from core.figures.style import ACCENT, MUTED, color_for, compact_layer_names, style_figure

CHANCE_COLOR = "#e03131"  # the chance line, as on the probe curves
GAINED_COLOR = "#009E73"
LOST_COLOR = "#D55E00"
METHOD_NAMES = {"leace": "LEACE", "mean_difference": "mean-difference projection"}


def alpha_title(result) -> str:
    """The alpha axis: alpha in units of the direction's scale (the layer's mean activation norm)."""
    what = ("the direction's run norm" if result.params.get("scale") == "run"
            else "the prompts' median token norm")
    return f"alpha (× {result.scale:.3g}, {what} at the layer)"


def alpha_label(alpha: float) -> str:
    """An alpha as a column, legend or subplot name: "alpha = -4", "alpha = 0.5"."""
    return f"alpha = {float(alpha):g}"


def _steering_title(result, what: str) -> str:
    return f"Steering {result.model_name} at {result.layer}: {what}"  # the direction is named in the legend/caption


def _row_height(result) -> int:
    """Pixels a table row needs: about 14 characters per wrapped line at 6 alpha columns, 20 px a line."""
    longest = max((len(str(t)) for t in result.continuations.ravel()), default=0)
    lines = 2 + longest * (len(result.alphas) + 1) // 90
    return max(60, 20 * lines + 16)


def steering_continuations(result, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """A table: one row per prompt, one column per alpha, each cell the greedy continuation (A columns + prompt)."""
    header = ["prompt", *(alpha_label(a) for a in result.alphas)]
    cells = [[html.escape(p, quote=False) for p in result.prompts]]
    cells += [[html.escape(str(text), quote=False) for text in result.continuations[i]] for i in range(len(result.alphas))]
    fig = go.Figure(go.Table(
        header={"values": [f"<b>{h}</b>" for h in header], "align": "left", "fill": {"color": "#eef1f8"}},
        cells={"values": cells, "align": "left", "height": 28},
        columnwidth=[1.2] + [1.0] * len(result.alphas),
    ))
    style_figure(fig, title=title or _steering_title(result, "greedy continuations per alpha"),
                 publication=publication, height=max(260, 90 + _row_height(result) * len(result.prompts)))
    fig.update_layout(margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


def steering_readout(result, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """Probe P(readout class) against alpha: one line per readout layer, and the continuations re-read unsteered.

    y values are result.readout[:, r] (mean over generated tokens and prompts) and
    result.continuation_readout (dashed).
    """
    alphas = np.asarray(result.alphas, dtype=float)
    order = np.argsort(alphas, kind="stable")
    short = compact_layer_names(list(result.readout_layers)) if result.readout_layers else []
    fig = go.Figure()
    for r, layer in enumerate(result.readout_layers):
        fig.add_trace(curve(
            alphas[order], np.asarray(result.readout)[order, r], name=f"steered stream at {short[r]} ({layer})",
            color=color_for(r), width=2,
            hovertemplate=f"{layer}<br>alpha %{{x:g}}<br>P({result.readout_class}) %{{y:.3f}}<extra></extra>",
        ))
    fig.add_trace(curve(
        alphas[order], np.asarray(result.continuation_readout)[order], name="continuations re-read unsteered",
        color="#1f2430", dash="dash", width=2,
        hovertemplate="continuations<br>alpha %{x:g}<br>P %{y:.3f}<extra></extra>",
    ))
    style_figure(
        fig, title=title or _steering_title(result, f"what the {result.readout_label} probe reads"),
        x_title=alpha_title(result),
        y_title=f"P({result.readout_label} = {result.readout_class})",
        publication=publication,
    )
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(legend={"orientation": "h", "y": -0.25, "title": {"text": "linear probe read at:"}})
    return fig


def steering_kl(result, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """Mean over prompts of KL(p_steered || p_unsteered) of the first generated token against alpha, min-max band."""
    alphas = np.asarray(result.alphas, dtype=float)
    order = np.argsort(alphas, kind="stable")
    kl = np.asarray(result.kl, dtype=float)[order]  # (A, P)
    x = alphas[order]
    fig = go.Figure()
    fig.add_trace(band(x, kl.min(axis=1), kl.max(axis=1), color=ACCENT, group="prompts",
                       name="prompts (min – max)").update(showlegend=True))
    fig.add_trace(curve(x, kl.mean(axis=1), name=f"mean over {kl.shape[1]} prompts", color=ACCENT,
                        hovertemplate="alpha %{x:g}<br>mean KL %{y:.4f} nats<extra></extra>"))
    style_figure(
        fig, title=title or _steering_title(result, "shift of the next-token distribution"),
        x_title=alpha_title(result), y_title="KL(steered ‖ unsteered), first token (nats)",
        publication=publication,
    )
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return fig


def steering_tokens(result, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """Per alpha (one panel each, alpha = 0 left out), the tokens whose next-token log-probability rose and fell most.

    Bars are result.gained_shift (positive) and result.lost_shift (negative), in nats, mean over prompts.
    """
    panels = [i for i, a in enumerate(result.alphas) if float(a) != 0.0] or list(range(len(result.alphas)))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[alpha_label(result.alphas[i]) for i in panels],
                        horizontal_spacing=0.12 / max(1, len(panels) - 1) + 0.05)
    for col, i in enumerate(panels, start=1):
        for tokens, shift, name, color in (
            (result.lost_tokens[i], result.lost_shift[i], "lost", LOST_COLOR),
            (result.gained_tokens[i], result.gained_shift[i], "gained", GAINED_COLOR),
        ):
            fig.add_trace(go.Bar(
                x=np.asarray(shift, dtype=float), y=[token_label(str(t)) for t in tokens], orientation="h",
                name=f"tokens {name} most", marker_color=color, legendgroup=name, showlegend=col == 1,
                hovertemplate="%{y}<br>%{x:+.3f} nats<extra>" + alpha_label(result.alphas[i]) + "</extra>",
            ), row=1, col=col)
        fig.update_xaxes(title_text="Δ log-probability (nats)", row=1, col=col)
        fig.update_yaxes(autorange="reversed", title_text="token" if col == 1 else None, row=1, col=col)
    style_figure(fig, title=title or _steering_title(result, "next-token log-probabilities that moved most"),
                 publication=publication, height=max(360, 60 + 26 * 2 * result.gained_tokens.shape[1]))
    fig.update_xaxes(title_text="Δ log-prob (nats)")  # short: one per panel, side by side
    fig.update_layout(barmode="overlay", legend={"orientation": "h", "y": -0.18}, showlegend=True)
    return fig


def _erasure_title(result, what: str) -> str:
    return f"Erasing {result.label} · {result.model_name} @ {result.layer} ({METHOD_NAMES.get(result.method, result.method)}): {what}"


def erasure_accuracy(result, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """Cross-validated probe accuracy at the erased layer and later ones, before and after the eraser, with chance."""
    names = list(result.layer_names)
    x = np.arange(len(names))
    method = METHOD_NAMES.get(result.method, result.method)
    folds = result.params.get("n_folds")
    fig = go.Figure()
    fig.add_trace(curve(x, np.asarray(result.accuracy_before, dtype=float), name="before erasure", color=ACCENT,
                        customdata=np.array(names, dtype=object),
                        hovertemplate="%{customdata}<br>before: %{y:.3f}<extra></extra>"))
    fig.add_trace(curve(x, np.asarray(result.accuracy_after, dtype=float), name=f"after {method} at {result.layer}",
                        color=color_for(1), customdata=np.array(names, dtype=object),
                        hovertemplate="%{customdata}<br>after: %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[x[0] - 0.2, x[-1] + 0.2], y=[result.chance, result.chance], mode="lines",
        name=f"chance ({result.chance:.3f}, majority class)", line={"color": CHANCE_COLOR, "dash": "dot", "width": 1.5},
        hoverinfo="skip",
    ))
    style_figure(
        fig, title=title or _erasure_title(result, "linear probe accuracy"),
        x_title="layer (the erased layer first, then later layers)",
        y_title=f"{result.label} probe accuracy" + (f" ({folds}-fold CV)" if folds else ""),
        publication=publication,
    )
    fig.update_xaxes(tickmode="array", tickvals=list(x), ticktext=compact_layer_names(names))
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(legend={"orientation": "h", "y": -0.25, "title": {"text": "logistic probe:"}})
    return fig


def erasure_change(result, *, title: str | None = None, publication: bool = False) -> go.Figure:
    """Mean squared change of the activations at the erased layer: this method beside the mean-difference projection."""
    methods = [result.method] if result.method == "mean_difference" else [result.method, "mean_difference"]
    values = [result.mean_squared_change] if len(methods) == 1 else [result.mean_squared_change,
                                                                      result.mean_difference_change]
    names = [METHOD_NAMES.get(m, m) for m in methods]
    fig = go.Figure(go.Bar(
        x=names, y=values, marker_color=[color_for(1), MUTED][: len(names)], text=[f"{v:.4g}" for v in values],
        textposition="outside", name="mean ‖x − x′‖²",
        hovertemplate="%{x}<br>mean squared change %{y:.4g}<extra></extra>",
    ))
    style_figure(fig, title=title or _erasure_title(result, "change"),
                 x_title="erasure method", y_title="mean ‖x − x′‖² (squared units)",
                 publication=publication)
    fig.update_yaxes(range=[0, max(values) * 1.2 if max(values) > 0 else 1])
    return fig
