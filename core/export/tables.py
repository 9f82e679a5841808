"""The data drawn in a figure as a long table, and that table as CSV or Parquet bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.errors import LayerscopeError
from core.export.formats import TABLE_FORMATS
from core.export.static import n_points


def _column(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        numeric = pd.to_numeric(pd.Series(array.ravel()), errors="coerce")
        if numeric.notna().sum() == pd.Series(array.ravel()).notna().sum():
            return numeric.to_numpy()
        return np.array(["" if v is None else str(v) for v in array.ravel()], dtype=object)
    return array


def figure_table(fig: go.Figure) -> pd.DataFrame:
    """The data drawn in `fig`, long form: one row per point (or heatmap cell) of every trace.

    Columns: trace, trace_name, type, point, x, y, [z], customdata_0.. and text where present.
    """
    frames = []
    for t, trace in enumerate(fig.data):
        kind = trace.type
        if kind == "heatmap" and trace.z is not None:
            z = np.asarray(trace.z, dtype=float)
            rows, cols = np.indices(z.shape)
            xs = np.asarray(trace.x) if trace.x is not None else np.arange(z.shape[1])
            ys = np.asarray(trace.y) if trace.y is not None else np.arange(z.shape[0])
            part = {"x": xs[cols.ravel()], "y": ys[rows.ravel()], "z": z.ravel()}
            if trace.text is not None and np.asarray(trace.text, dtype=object).shape == z.shape:
                part["text"] = _column(np.asarray(trace.text, dtype=object).ravel())
        else:
            n = n_points({"x": trace.x, "y": trace.y}) if hasattr(trace, "x") else 0
            if not n:
                continue
            part = {axis: _column(getattr(trace, axis)) for axis in ("x", "y")
                    if getattr(trace, axis, None) is not None}
            custom = getattr(trace, "customdata", None)
            if custom is not None:
                custom = np.asarray(custom, dtype=object)
                custom = custom.reshape(len(custom), -1) if custom.ndim != 2 else custom
                if len(custom) == n:
                    for j in range(custom.shape[1]):
                        part[f"customdata_{j}"] = _column(custom[:, j])
            text = getattr(trace, "text", None)
            if text is not None and not isinstance(text, str) and len(text) == n:
                part["text"] = _column(text)
        size = len(next(iter(part.values())))
        frames.append(
            pd.DataFrame({"trace": t, "trace_name": trace.name or "", "type": kind, "point": np.arange(size), **part})
        )
    if not frames:
        return pd.DataFrame(columns=["trace", "trace_name", "type", "point", "x", "y"])
    table = pd.concat(frames, ignore_index=True)
    for name in table.columns:  # mixed object columns (numbers from one trace, text from another) -> text
        if table[name].dtype == object:
            table[name] = table[name].map(_text)
    return table


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def table_bytes(table: pd.DataFrame, fmt: str) -> bytes:
    """A table as CSV or Parquet bytes."""
    if fmt == "csv":
        return table.to_csv(index=False).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise LayerscopeError(f"format={fmt!r} is not a table format; choose one of {', '.join(TABLE_FORMATS)}")
