"""The labels a probe learns: missing values, rare classes, class codes, numeric targets, the task."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.errors import LayerscopeError
from core.validation import check_int

logger = logging.getLogger(__name__)

MAX_CLASSES = 200  # more distinct labels than this is almost surely a numeric target
AUTO_MAX_CLASSES = 20  # task="auto": a numeric column with more distinct values is regression


def show_value(value: Any) -> str:
    """repr of a label value as the user wrote it (numpy scalars as Python ones)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def drop_missing(values: Any, dropna: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept values, keep mask (n,) bool) after handling missing labels (NaN/None)."""
    import pandas as pd

    values = np.asarray(values)
    if values.ndim != 1:
        raise LayerscopeError(f"{what} must be 1-D with one value per input, got shape {values.shape}")
    missing = np.asarray(pd.isna(values), dtype=bool).reshape(len(values))
    n_missing = int(missing.sum())
    if n_missing and not dropna:
        raise LayerscopeError(
            f"{what} have {n_missing} missing values (NaN/None) out of {len(values)}; "
            "pass dropna=True to probe the inputs that have one"
        )
    return values[~missing], ~missing


def check_folds(n_folds: Any, n: int) -> int:
    """n_folds as an int >= 2 that `n` labelled inputs can fill."""
    n_folds = check_int("n_folds", n_folds, low=2)
    if n < n_folds:
        raise LayerscopeError(f"there are {n} inputs, fewer than n_folds={n_folds}; lower n_folds or add inputs")
    return n_folds


def drop_rare_classes(kept: np.ndarray, keep: np.ndarray, n_folds: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels and keep mask without the classes that have fewer than n_folds members, and those classes."""
    try:
        values, counts = np.unique(kept, return_counts=True)
    except TypeError:
        return kept, keep, []  # mixed types: encode_classes explains
    rare = values[counts < n_folds]
    if rare.size == 0:
        return kept, keep, []
    rare_rows = np.isin(kept, rare)
    keep = keep.copy()
    keep[np.flatnonzero(keep)[rare_rows]] = False
    logger.info("dropped %d inputs of %d classes with fewer than %d members", rare_rows.sum(), rare.size, n_folds)
    return kept[~rare_rows], keep, [str(v) for v in rare]


def encode_classes(labels: np.ndarray, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes (K,), codes (n,)) for categorical labels, after checking they can be probed."""
    try:
        classes, codes = np.unique(labels, return_inverse=True)
    except TypeError as err:
        raise LayerscopeError(
            "labels mix types (e.g. numbers and strings) and cannot be sorted into classes; "
            "convert them to one type first"
        ) from err
    n, k = len(labels), len(classes)
    if k < 2:
        raise LayerscopeError(f"labels have one class ({show_value(classes[0])}); a probe needs at least 2 classes")
    limit = min(MAX_CLASSES, n // 2)
    if k > limit:
        raise LayerscopeError(
            f"labels have {k} distinct values, more than the {limit} allowed for {n} inputs "
            f"(at most {MAX_CLASSES} and at most half the inputs); for a numeric target use "
            "probe_r2_by_layer (task='regression'), otherwise group rare labels"
        )
    counts = np.bincount(codes, minlength=k)
    small = np.flatnonzero(counts < n_folds)
    if small.size:
        shown = ", ".join(f"{show_value(classes[i])} ({counts[i]})" for i in small[:5])
        more = f" and {small.size - 5} more" if small.size > 5 else ""
        which = "1 class has" if small.size == 1 else f"{small.size} classes have"
        raise LayerscopeError(
            f"{which} fewer members than n_folds={n_folds}: {shown}{more}; "
            "pass drop_rare=True to leave them out, merge them, or lower n_folds"
        )
    return classes, codes


def numeric_targets(values: np.ndarray) -> np.ndarray:
    """Regression targets (n,) as float64, refusing text, infinities and constants."""
    try:
        targets = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        example = next((v for v in values if not isinstance(v, (int, float, np.number))), values[0])
        raise LayerscopeError(
            f"targets must be numbers, got values such as {show_value(example)}; "
            "for categories use probe_accuracy_by_layer (task='classification')"
        ) from err
    if not np.isfinite(targets).all():
        raise LayerscopeError(f"targets hold {int((~np.isfinite(targets)).sum())} infinite values; remove them")
    if np.ptp(targets) == 0:
        raise LayerscopeError(f"targets are constant ({show_value(targets[0])}); R^2 needs targets that vary")
    return targets


def infer_task(values: Any) -> str:
    """"classification" or "regression" for a label column (what task="auto" picks).

    Strings, booleans and categories are classes; numbers with more than
    AUTO_MAX_CLASSES distinct values are a regression target, fewer are classes.
    """
    import pandas as pd

    series = pd.Series(values)
    present = series.dropna()
    if series.dtype == object:  # numbers stored as objects (e.g. with None) count as numbers
        numeric = pd.to_numeric(present, errors="coerce")
        if len(present) and numeric.notna().all() and not present.map(lambda v: isinstance(v, bool)).any():
            present = numeric
        else:
            return "classification"
    elif pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return "classification"
    return "regression" if present.nunique() > AUTO_MAX_CLASSES else "classification"
