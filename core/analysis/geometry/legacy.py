"""Geometry results stored before the result codec: `<metric>__mean.npy`, ... + meta fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.analysis.geometry.result import GeometryResult


def read_legacy_result(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> GeometryResult:
    """The GeometryResult in an entry written with one array per metric and statistic."""
    metrics = tuple(meta["metrics"])
    return GeometryResult(
        layer_names=tuple(meta["layer_names"]),
        metrics=metrics,
        mean={m: np.array(arrays[f"{m}__mean"]) for m in metrics},
        q25={m: np.array(arrays[f"{m}__q25"]) for m in metrics},
        q75={m: np.array(arrays[f"{m}__q75"]) for m in metrics},
        n_skipped={m: np.array(arrays[f"{m}__n_skipped"]) for m in metrics},
        reasons=dict(meta["reasons"]),
        layer_reasons={m: tuple(r) for m, r in meta["layer_reasons"].items()},
        params=dict(meta["result_params"]),
    )
