"""Reading what an AppTest run drew: plotly figures, their typed arrays, buttons."""

from __future__ import annotations

import base64
import json

import numpy as np


def figures(at) -> list[dict]:
    """The plotly figures the page drew, as dicts."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(array) -> np.ndarray:
    """A plotly JSON array: (nested) lists, or {"dtype", "bdata"[, "shape"]} (base64 typed array)."""
    if isinstance(array, dict) and "bdata" in array:
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
        return flat.reshape([int(n) for n in str(array["shape"]).split(",")]) if "shape" in array else flat
    return np.asarray(array)


def button(at, label: str, *, prefix: bool = False):
    """The button labelled `label` (or starting with it), failing with the labels there are."""
    matches = [b for b in at.button if (b.label.startswith(label) if prefix else b.label == label)]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]
