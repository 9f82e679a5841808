"""The publication style of an exported figure: white background, larger fonts, colour-blind-safe colours."""

from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go

from core.figures.style import ACCENT, MUTED, PALETTE, style_figure

# screen colours (core.figures.style and the figure modules) -> colour-blind-safe Okabe-Ito
_PUBLICATION_COLOURS = {
    ACCENT: PALETTE[0],  # blue
    MUTED: PALETTE[8],  # grey
    "#e03131": PALETTE[5],  # chance line: vermillion
    "#fab005": PALETTE[1],  # best-layer star: orange
    "#d6336c": PALETTE[3],  # search matches: reddish purple
}


def _rgb(colour: str) -> tuple[tuple[int, int, int], float | None] | None:
    text = colour.strip().lower()
    if re.fullmatch(r"#[0-9a-f]{6}", text):
        return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5)), None  # type: ignore[return-value]
    m = re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*([\d.]+)\s*)?\)", text)
    if m:
        return (int(m[1]), int(m[2]), int(m[3])), (float(m[4]) if m[4] is not None else None)
    return None


_COLOUR_MAP = {_rgb(screen)[0]: _rgb(pub)[0] for screen, pub in _PUBLICATION_COLOURS.items()}


def _publication_colour(colour: str) -> str:
    parsed = _rgb(colour)
    if parsed is None or parsed[0] not in _COLOUR_MAP:
        return colour
    (r, g, b), alpha = _COLOUR_MAP[parsed[0]], parsed[1]
    return f"#{r:02x}{g:02x}{b:02x}" if alpha is None else f"rgba({r},{g},{b},{alpha:g})"


def _recolour(node: Any) -> Any:
    """Map screen colours to the publication palette in a figure dict (keys ending in 'color')."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key.endswith("color") and isinstance(value, str):
                out[key] = _publication_colour(value)
            elif key.endswith("color") and isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
                out[key] = [_publication_colour(v) if isinstance(v, str) else v for v in value]
            else:
                out[key] = _recolour(value)
        return out
    if isinstance(node, (list, tuple)) and node and isinstance(node[0], dict):
        return [_recolour(v) for v in node]
    return node


def publication_style(fig: go.Figure) -> go.Figure:
    """A copy of `fig` in the publication style: white background, larger fonts, colour-blind-safe colours.

    Applied through core.figures.style.style_figure(publication=True), keeping the figure's
    titles, height and any wider margins; screen accent colours become Okabe-Ito colours.
    The toolbar is dropped by `figure_bytes` (HTML config), not here.
    """
    layout = fig.layout
    margin = {side: getattr(layout.margin, side) for side in ("l", "r", "t", "b")}
    out = go.Figure(_recolour(fig.to_dict()))
    style_figure(
        out,
        title=layout.title.text or "",
        x_title=layout.xaxis.title.text,
        y_title=layout.yaxis.title.text,
        publication=True,
        height=layout.height,
    )
    out.update_layout(title={"pad": {"l": 8}})  # the screen title sits flush left; give print a margin
    wider = {side: value for side, value in margin.items()
             if value is not None and value > (out.layout.margin[side] or 0)}
    if wider:
        out.update_layout(margin=wider)
    return out
