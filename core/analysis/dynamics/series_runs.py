"""A series' runs opened once, and the checks every dynamics analysis makes on a series."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.errors import LayerscopeError

if TYPE_CHECKING:
    from core.activations import Activations
    from core.series import Series
    from core.store import Store


def open_runs(store: Store, series: Series) -> list[Activations]:
    """Every checkpoint's run, oldest first; LayerscopeError naming a checkpoint whose run is missing."""
    runs = []
    for label, key in zip(series.steps, series.run_keys, strict=True):
        if not store.has_run(key):
            raise LayerscopeError(f"checkpoint {label!r} of series {series.key} ({series.name}): run {key} is not in "
                                  f"the workspace {store.root}; extract the series again")
        runs.append(store.open_run(key, verify=False))
    return runs


def step_values(series: Series) -> np.ndarray:
    """(n_checkpoints,) float64 training step of each checkpoint, NaN where the series does not know it."""
    return np.array([np.nan if v is None else float(v) for v in series.step_values], dtype=np.float64)


def check_series_layers(series: Series, layers: Sequence[str] | str | None) -> tuple[str, ...]:
    """The series' layers (all when None), refusing names it does not hold."""
    if layers is None:
        return tuple(series.layers)
    chosen = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [layer for layer in chosen if layer not in series.layers]
    if unknown or not chosen:
        raise LayerscopeError(f"layers={list(chosen)!r}: {', '.join(map(repr, unknown)) or 'none given'} not in "
                              f"series {series.name}; it has {', '.join(series.layers)}")
    return chosen


def check_series_layer(series: Series, layer: str) -> str:
    """`layer` if the series holds it."""
    if layer not in series.layers:
        raise LayerscopeError(f"layer={layer!r} is not in series {series.name}; it has {', '.join(series.layers)}")
    return layer
