"""Comparing what a page drew (AppTest's plotly JSON) with a figure built by its recipe."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from apptest_helpers import values

DATA_KEYS = ("x", "y", "z", "customdata", "text", "hovertext", "name", "type", "mode")


def charts(at) -> dict[str, dict]:
    """The plotly figures a page drew, as dicts, by the chart's key."""
    return {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


def _same(a: Any, b: Any) -> bool:
    a, b = values(a) if a is not None else None, values(b) if b is not None else None
    if a is None or b is None:
        return a is None and b is None
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fciu" and b.dtype.kind in "fciu":
        return bool(np.allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-12, equal_nan=True))
    return bool(np.array_equal(a.astype(str), b.astype(str)))


def trace_differences(drawn: dict, built: dict) -> list[str]:
    """Where two plotly figure dicts differ in their data: trace count, then each trace's data keys."""
    a, b = drawn["data"], built["data"]
    if len(a) != len(b):
        return [f"{len(a)} traces drawn, {len(b)} built"]
    return [f"trace {i} ({ta.get('name')!r}): {key} differs"
            for i, (ta, tb) in enumerate(zip(a, b)) for key in DATA_KEYS if not _same(ta.get(key), tb.get(key))]


def assert_page_draws(drawn: dict, built) -> None:
    """The page's figure (AppTest JSON) holds the same data and title as the recipe's BuiltFigure."""
    rebuilt = json.loads(built.figure.to_json())
    assert not trace_differences(drawn, rebuilt), trace_differences(drawn, rebuilt)
    assert drawn["layout"]["title"]["text"] == rebuilt["layout"]["title"]["text"]
    assert len(drawn.get("frames", [])) == len(rebuilt.get("frames", []))
    for frame_drawn, frame_built in zip(drawn.get("frames", []), rebuilt.get("frames", [])):
        assert not trace_differences(frame_drawn, frame_built), frame_drawn.get("name")
