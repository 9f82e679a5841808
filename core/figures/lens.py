"""Logit-lens figures: the layer x position heatmap of top next tokens and the KL-to-final curve."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from core.figures.depth import band, curve, depth_axis, style_depth_figure
from core.figures.style import ACCENT, CONTINUOUS, style_figure

CELL_CHARS = 8  # a cell shows at most this many characters of its token (the hover shows all of it)
TICK_CHARS = 16  # the same for the input tokens under the x axis


def token_label(token: str, *, limit: int | None = None) -> str:
    """A token as cell/label text: HTML-escaped, newlines and blank tokens made visible.

    limit: longer tokens are cut to `limit` characters, the last one an ellipsis, so that
    they stay inside their cell; the cut happens before escaping, so no entity is split.
    """
    shown = token.replace("\n", "↵").replace("\t", "⇥")
    if not shown.strip():
        shown = "␣" * max(1, len(shown))
    if limit is not None and len(shown) > limit:
        shown = shown[: max(1, limit - 1)] + "…"
    return html.escape(shown)


def lens_heatmap(
    result, *, positions: tuple[int, int] | None = None, title: str | None = None, publication: bool = False
) -> go.Figure:
    """Layer x position heatmap of the logit lens: cell text = top next token, colour = its probability.

    result: a core.analysis.lens.LensResult. Rows run from the embeddings (bottom) to the
    last layer (top); columns are input positions labelled with the input token (the
    cell holds the predicted *next* token, cut to CELL_CHARS characters). Hover lists the
    whole top-k tokens and the KL.
    positions: (start, stop) window of positions to draw (long inputs); default all.
    """
    L, T = result.top_probs.shape[:2]
    start, stop = positions if positions is not None else (0, T)
    if not 0 <= start < stop <= T:
        raise ValueError(f"positions={positions!r} must satisfy 0 <= start < stop <= {T}")
    cols = list(range(start, stop))
    z = result.top_probs[:, start:stop, 0]  # (L, stop - start)
    text = [[token_label(str(t), limit=CELL_CHARS) for t in row] for row in result.top_tokens[:, start:stop, 0]]
    hover = []
    for li in range(L):
        row = []
        for t in cols:
            options = "<br>".join(
                f"{token_label(str(tok))}  {p:.3f}" for tok, p in zip(result.top_tokens[li, t], result.top_probs[li, t])
            )
            row.append(
                f"<b>{html.escape(result.layer_names[li])}</b> · after “{token_label(result.tokens[t])}” "
                f"(position {t})<br>{options}<br>KL to final {result.kl_to_final[li, t]:.3f} nats"
            )
        hover.append(row)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=cols,
            y=list(range(L)),
            text=text,
            texttemplate="%{text}",
            textfont={"size": 10},
            hovertext=hover,
            hoverinfo="text",
            colorscale=CONTINUOUS,
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "probability"}, "thickness": 14},
            xgap=1,
            ygap=1,
            name="top token",
        )
    )
    style_figure(
        fig,
        title=title or f"Logit lens · {result.model_name}: top next token at each layer",
        x_title="input token (cell: predicted next token)",
        y_title="layer",
        publication=publication,
        height=max(360, 22 * L + 160),
    )
    fig.update_xaxes(
        tickmode="array", tickvals=cols, ticktext=[token_label(result.tokens[t], limit=TICK_CHARS) for t in cols],
        tickangle=-45, showgrid=False,
    )
    fig.update_yaxes(
        tickmode="array", tickvals=list(range(L)),
        ticktext=[f"{i} · {name}" for i, name in enumerate(result.layer_names)], showgrid=False,
    )
    return fig


def kl_curve(result, *, relative_depth: bool = False, title: str | None = None, publication: bool = False) -> go.Figure:
    """Mean over positions of KL(p_final || p_layer) per layer, with the interquartile band over positions.

    result: a core.analysis.lens.LensResult. The last block reads 0 by construction.
    """
    L = len(result.layer_names)
    x = depth_axis(L, relative_depth=relative_depth)
    q25, q75 = np.percentile(result.kl_to_final, [25, 75], axis=1)
    fig = go.Figure()
    fig.add_trace(band(x, q25, q75, color=ACCENT, group="positions", name="positions (interquartile)"))
    fig.add_trace(
        curve(
            x,
            result.mean_kl,
            name="mean over positions (interquartile band)",
            color=ACCENT,
            customdata=np.stack([np.array(result.layer_names, dtype=object), q25, q75], axis=1),
            hovertemplate="%{customdata[0]}<br>mean KL %{y:.3f} nats<br>"
            "interquartile %{customdata[1]:.3f} – %{customdata[2]:.3f}<extra></extra>",
        )
    )
    return style_depth_figure(
        fig,
        title=title or f"Logit lens · {result.model_name}: KL divergence to the final output by layer",
        y_title="KL(final ‖ layer) (nats)",
        relative_depth=relative_depth,
        publication=publication,
    )
