"""A figure as drawn into a static format: no animation, vector markers, large traces subsampled for SVG/PDF."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

VECTOR_MAX_POINTS = 20_000  # SVG/PDF draw every marker as a path: more points are downsampled (seeded)


def _decoded(node: Any) -> Any:
    """A figure dict with plotly's typed arrays ({"dtype", "bdata", "shape"}) turned back into numpy arrays."""
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            array = np.frombuffer(base64.b64decode(node["bdata"]), dtype=np.dtype(node["dtype"]))
            shape = node.get("shape")
            return array.reshape([int(v) for v in str(shape).split(",")]) if shape else array
        return {key: _decoded(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_decoded(value) for value in node]
    return node


def n_points(trace: Mapping) -> int:
    """Points in a trace: the length of its x (or y) values."""
    for axis in ("x", "y"):
        values = trace.get(axis)
        if values is not None and not isinstance(values, str):
            return len(values)
    return 0


def _take(value: Any, keep: np.ndarray, n: int) -> Any:
    if isinstance(value, dict):
        return {k: _take(v, keep, n) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, str) and len(value) == n:
        array = np.asarray(value, dtype=object if isinstance(value, (list, tuple)) else None)
        return array[keep]
    return value


def static_figure(fig: go.Figure, fmt: str, *, seed: int = 0) -> tuple[go.Figure, dict[str, Any] | None]:
    """The figure as drawn into a static format, and a note when it had to change.

    Every static format: animation controls and frames dropped (the first frame is drawn);
    WebGL scatter becomes vector scatter (PNG keeps WebGL above VECTOR_MAX_POINTS markers).
    SVG/PDF above VECTOR_MAX_POINTS markers: each large trace is subsampled (seeded,
    proportionally) and the note says so; PNG and HTML keep every point.
    """
    data = fig.to_dict()
    data["data"] = _decoded(data.get("data", []))
    note: dict[str, Any] = {}
    if data.get("frames"):
        note["animation"] = "static image of the first frame; the HTML export keeps the animation"
        data.pop("frames")
        data["layout"].pop("updatemenus", None)
        data["layout"].pop("sliders", None)
    traces = data.get("data", [])
    gl_points = sum(n_points(t) for t in traces if t.get("type") == "scattergl")
    if fmt in ("svg", "pdf") or gl_points <= VECTOR_MAX_POINTS:
        # headless WebGL (software) is slow and rasterises inside SVG: draw markers as vectors instead
        for trace in traces:
            if trace.get("type") == "scattergl":
                trace["type"] = "scatter"
    if fmt in ("svg", "pdf"):
        counts = [n_points(t) if t.get("type") == "scatter" else 0 for t in traces]
        total = sum(counts)
        if total > VECTOR_MAX_POINTS:
            rng = np.random.default_rng(seed)
            large = sum(c for c in counts if c > 100)
            budget = max(VECTOR_MAX_POINTS - (total - large), 100)
            kept = 0
            for i, (trace, n) in enumerate(zip(traces, counts)):
                if n <= 100:  # highlights, selections, lines: always kept whole
                    kept += n
                    continue
                size = max(1, round(n * budget / large))
                keep = np.sort(rng.choice(n, size=size, replace=False))
                traces[i] = {k: (_take(v, keep, n) if k not in ("type", "name") else v) for k, v in trace.items()}
                kept += size
            note["downsampled"] = {
                "from_points": int(total),
                "to_points": int(kept),
                "seed": seed,
                "why": f"{fmt.upper()} draws every marker as a vector path; above {VECTOR_MAX_POINTS:,} markers "
                "the file becomes unwieldy, so large traces were subsampled at random (seeded). "
                "PNG and HTML keep every point.",
            }
    return go.Figure(data), (note or None)

