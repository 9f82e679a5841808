"""The layers a probe reads: one (n, d) array per layer, checked, and grouped into batches that fit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from core.errors import LayerscopeError

MEMORY_BYTES = 1 << 30  # working memory per batch of layers


def layer_items(layers: Any) -> list[tuple[str, np.ndarray]]:
    """(name, (n, d) array) pairs from a Mapping or a pooled Activations run."""
    from core.activations import Activations

    if isinstance(layers, Activations):
        if layers.is_tokens:
            raise LayerscopeError(
                f"run {layers.key} holds one vector per token (pooling='tokens') but a probe needs one "
                "vector per input; extract with pooling='mean' (or 'first'/'last')"
            )
        return [(name, layers[name]) for name in layers.layer_names]
    if not isinstance(layers, Mapping):
        raise LayerscopeError(
            f"layers must be a mapping of layer name -> (n, d) array or an Activations run, "
            f"not {type(layers).__name__}"
        )
    items = [(str(name), array) for name, array in layers.items()]
    if not items:
        raise LayerscopeError("layers is empty; give at least one layer")
    return items


def check_layer_shapes(items: list[tuple[str, np.ndarray]], n_labels: int) -> None:
    """Raise unless every layer is 2-D with one row per label and at least one feature."""
    for name, array in items:
        shape = getattr(array, "shape", None)
        if shape is None or len(shape) != 2:
            raise LayerscopeError(f"layer {name!r} must be a 2-D (n, d) array, got shape {shape}")
        if shape[0] != n_labels:
            raise LayerscopeError(
                f"layer {name!r} has {shape[0]} rows but there are {n_labels} labels; give one label per input"
            )
        if shape[1] < 1:
            raise LayerscopeError(f"layer {name!r} has no features (shape {shape})")


def check_finite(name: str, X: np.ndarray) -> None:
    """Raise if the (n, d) activations of layer `name` hold NaN or inf."""
    bad_rows = 0
    for start in range(0, X.shape[0], 8192):  # blocks: a memmapped layer may not fit in memory twice
        bad_rows += int((~np.isfinite(np.asarray(X[start : start + 8192]))).any(axis=1).sum())
    if bad_rows:
        raise LayerscopeError(
            f"layer {name!r} has NaN/inf values in {bad_rows} of {X.shape[0]} rows; "
            "the activations overflowed or were written incompletely: extract them again in float32"
        )


def width_batches(items: list[tuple[str, np.ndarray]], bytes_per_layer: Callable[[int], float]) -> list[list[int]]:
    """Indices of layers to fit together: equal widths, within MEMORY_BYTES of working memory."""
    by_width: dict[int, list[int]] = {}
    for i, (_, array) in enumerate(items):
        by_width.setdefault(int(array.shape[1]), []).append(i)
    batches = []
    for d, indices in by_width.items():
        size = max(1, int(MEMORY_BYTES // max(bytes_per_layer(d), 1)))
        batches += [indices[i : i + size] for i in range(0, len(indices), size)]
    return batches
