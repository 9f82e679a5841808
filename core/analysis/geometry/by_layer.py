"""Geometry metrics for every layer of a run, cached in the store.

Undefined values are never silent: the single-matrix functions raise `LayerscopeError`,
the per-input functions return NaN for the inputs where a metric is undefined, and
`geometry_by_layer` turns both into NaN plus a reason in `GeometryResult.reasons`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch

from core import codec
from core.activations import Activations
from core.analysis.arrays import as_matrix
from core.analysis.geometry import _rows
from core.analysis.geometry.curvature import CURVATURE_VARIANTS, check_degenerate, curvature_per_input
from core.analysis.geometry.entropy import prompt_entropy
from core.analysis.geometry.intrinsic_dimension import (
    ID_METHODS,
    MIN_ID_POINTS,
    check_fraction,
    distinct_rows,
    intrinsic_dimension,
)
from core.analysis.geometry.legacy import read_legacy_result
from core.analysis.geometry.result import GEOMETRY_METRICS, PER_INPUT_METRICS, RESULT_METRICS, GeometryResult
from core.analysis.geometry.spectrum import (
    check_alpha,
    check_entropy_variant,
    effective_rank_from_spectrum,
    gram_spectrum,
    matrix_entropy,
    mean_cosine,
    top_share_from_spectrum,
)
from core.device import pick_device
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.store import Store
from core.validation import check_choice, check_int

logger = logging.getLogger(__name__)

GEOMETRY_VERSION = 1  # bump when a formula or convention changes: invalidates cached results
DEFAULT_OPTIONS: dict[str, Any] = {
    "curvature_variant": "signed",  # "signed" (Hosseini, default) or "abs" (Skean)
    "curvature_degenerate": "skip",  # zero-length steps, inputs under 3 tokens: "skip", or "zero" (Skean; abs only)
    "id_method": "twonn",  # "twonn" (linear fit, dadapy default) or "mle"
    "id_fraction": 0.9,  # share of smallest mu kept by the TwoNN fit
    "entropy_alpha": 1.0,  # Rényi order of dataset and prompt entropy
    "entropy_variant": "exact",  # "exact" (Gram spectrum) or "skean" (Gram entries clamped at 0 first)
    "entropy_normalize": True,  # divide entropies by log(min(n, d))
    "anisotropy_n_pairs": 10_000,  # random row pairs for the mean cosine
    "device": None,  # torch device; None = CUDA when present (not part of the cache key)
}
# Options added after GEOMETRY_VERSION 1: in the cache key only when not at their default, so the
# results stored before them (which used those defaults) keep their keys and are read back.
_KEYED_WHEN_SET = ("curvature_degenerate", "entropy_variant")

codec.register_legacy(GeometryResult, read_legacy_result)


def _check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not names:
        raise LayerscopeError(f"metrics=[] must name at least one of: {', '.join(GEOMETRY_METRICS)}")
    for name in names:
        check_choice("metrics", name, GEOMETRY_METRICS)
    return tuple(dict.fromkeys(names))


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise LayerscopeError(f"unknown geometry options {unknown}; allowed: {', '.join(DEFAULT_OPTIONS)}")
    filled = {**DEFAULT_OPTIONS, **options}
    check_choice("curvature_variant", filled["curvature_variant"], CURVATURE_VARIANTS)
    check_degenerate(filled["curvature_variant"], filled["curvature_degenerate"],
                     names=("curvature_variant", "curvature_degenerate"))
    check_entropy_variant("entropy_variant", filled["entropy_variant"])
    check_choice("id_method", filled["id_method"], ID_METHODS)
    filled["id_fraction"] = check_fraction("id_fraction", filled["id_fraction"])
    filled["entropy_alpha"] = check_alpha(filled["entropy_alpha"])
    filled["entropy_normalize"] = bool(filled["entropy_normalize"])
    filled["anisotropy_n_pairs"] = check_int("anisotropy_n_pairs", filled["anisotropy_n_pairs"], low=1)
    return filled


def run_layers(acts: Activations | Mapping[str, Any]) -> tuple[bool, tuple[str, ...]]:
    """Whether `acts` is a stored run (else a mapping layer -> array), and its layer names (at least one)."""
    is_run = isinstance(acts, Activations)
    if not is_run and not isinstance(acts, Mapping):
        raise LayerscopeError(f"acts must be an Activations run or a mapping layer -> array; got {type(acts).__name__}")
    layer_names = tuple(acts.layer_names if is_run else acts.keys())
    if not layer_names:
        raise LayerscopeError("acts has no layers")
    return is_run, layer_names


def geometry_by_layer(
    acts: Activations | Mapping[str, np.ndarray],
    metrics: Sequence[str] = (
        "curvature",
        "intrinsic_dimension",
        "dataset_entropy",
        "prompt_entropy",
        "effective_rank",
        "anisotropy",
    ),
    *,
    store: Store | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    max_points: int = 5000,
    stored_only: bool = False,
    **options: Any,
) -> GeometryResult | None:
    """Geometry metrics for every layer of a run.

    acts: an `Activations` run, or {layer: (n_inputs, d) pooled array} for pooled-only use.
    Per-token metrics (curvature, prompt_entropy) need pooling="tokens"; otherwise they are
    NaN with a reason. On a tokens run the dataset-level metrics use the mean of each
    input's tokens. Intrinsic dimension uses at most `max_points` inputs, drawn with `seed`
    (the same inputs at every layer), duplicates removed and counted (`n_duplicates`).
    Options (defaults in DEFAULT_OPTIONS): curvature_variant, curvature_degenerate, id_method,
    id_fraction, entropy_alpha, entropy_variant, entropy_normalize, anisotropy_n_pairs, device.
    With `store` (needs an Activations run) results are cached under kind "geometry"; stored_only=True
    only looks the result up there (None when it is not stored).
    progress(done, total, message) is called after each layer x metric.
    """
    metric_names = _check_metrics(metrics)
    opts = _check_options(options)
    seed = check_int("seed", seed)
    max_points = check_int("max_points", max_points, low=MIN_ID_POINTS)
    is_run, layer_names = run_layers(acts)
    params = {
        "run": acts.key if is_run else None,
        "layers": list(layer_names),
        "pooling": acts.pooling if is_run else "pooled arrays",
        "metrics": list(metric_names),
        **{k: v for k, v in opts.items()
           if k != "device" and (k not in _KEYED_WHEN_SET or v != DEFAULT_OPTIONS[k])},
        "seed": seed,
        "max_points": max_points,
        "version": GEOMETRY_VERSION,
    }
    recorded = {**params, **{k: opts[k] for k in _KEYED_WHEN_SET}}  # the result names every convention

    def compute() -> GeometryResult:
        return _compute_geometry(acts, layer_names, metric_names, opts, seed, max_points, recorded, progress)

    if store is None:
        return compute()
    if not is_run:
        raise LayerscopeError("caching with store= needs an Activations run (its key names the entry); "
                              "pass store=None for a mapping of arrays")
    if stored_only:
        return store.lookup("geometry", params, GeometryResult)
    result = store.cached("geometry", params, compute, GeometryResult)
    total = len(layer_names) * len(metric_names)
    report(progress, total, total, "geometry loaded")
    return result


def _summarise_layer_reasons(layer_names: Sequence[str], reasons: Sequence[str | None]) -> str | None:
    present = [(layer, r) for layer, r in zip(layer_names, reasons) if r]
    if not present:
        return None
    distinct = {r for _, r in present}
    if len(distinct) == 1 and len(present) == len(layer_names):
        return present[0][1]
    return "; ".join(f"layer {layer}: {r}" for layer, r in present)


def _skip_reason(n_skipped: int, n_inputs: int, n_short: int, min_tokens: int, other: str) -> str | None:
    if n_skipped == 0:
        return None
    parts = []
    if n_short:
        parts.append(f"{n_short} with fewer than {min_tokens} tokens" if min_tokens > 1
                     else f"{n_short} without tokens")
    if n_skipped - n_short:
        parts.append(f"{n_skipped - n_short} with {other}")
    head = "all inputs skipped" if n_skipped == n_inputs else f"{n_skipped} of {n_inputs} inputs skipped"
    return f"{head} ({', '.join(parts)})"


def _per_input_values(
    metric: str, X: np.ndarray, offsets: np.ndarray, opts: dict[str, Any], device: torch.device
) -> tuple[np.ndarray, str | None]:
    """(n_inputs,) values of a per-input metric (NaN = skipped) and why inputs were skipped."""
    lengths = np.diff(offsets)
    if metric == "curvature":
        values, skipped = curvature_per_input(X, offsets, variant=opts["curvature_variant"],
                                              degenerate=opts["curvature_degenerate"], device=device)
        min_tokens = 1 if opts["curvature_degenerate"] == "zero" else 3  # "zero": short inputs count as 0
        return values, _skip_reason(skipped, len(values), int((lengths < min_tokens).sum()), min_tokens,
                                    "only zero-length steps (identical consecutive tokens)")
    values = prompt_entropy(X, offsets, alpha=opts["entropy_alpha"], variant=opts["entropy_variant"],
                            normalize=opts["entropy_normalize"], device=device)
    return values, _skip_reason(int(np.isnan(values).sum()), len(values), int((lengths < 2).sum()), 2,
                                "all tokens identical")


class _PooledLayer:
    """One layer's vector per input (the token mean on a tokens run) and its covariance spectrum, read once."""

    def __init__(self, X: np.ndarray, offsets: np.ndarray | None, device: torch.device) -> None:
        self._X, self._offsets, self._device = X, offsets, device

    @cached_property
    def _pooled(self) -> tuple[np.ndarray, int]:
        if self._offsets is None:
            return self._X, 0
        means = _rows.input_means(self._X, self._offsets, self._device)
        keep = ~np.isnan(means[:, 0])
        return means[keep], int((~keep).sum())

    @property
    def vectors(self) -> np.ndarray:
        """(n, d) one vector per input with tokens."""
        return self._pooled[0]

    @property
    def dropped(self) -> int:
        """Inputs without tokens, left out of `vectors`."""
        return self._pooled[1]

    @cached_property
    def spectrum(self) -> np.ndarray:
        """Eigenvalues of the centred Gram of `vectors` (effective rank and top share use one spectrum)."""
        return gram_spectrum(as_matrix(self.vectors), unit_rows=False, device=self._device)


def _dataset_values(
    metric: str, layer: _PooledLayer, opts: dict[str, Any], seed: int, max_points: int, id_points: list[int],
    duplicates: np.ndarray, layer_index: int, device: torch.device,
) -> dict[str, Callable[[], float]]:
    """Dataset-level value(s) of `metric` at one layer, by result metric name, computed when called.

    Reading the layer (and its spectrum) raises here, for every result name of the metric at once.
    Intrinsic dimension records the duplicate points it removes in duplicates[layer_index].
    """
    vectors = layer.vectors
    if metric == "intrinsic_dimension":
        rows = vectors
        if len(vectors) > max_points:  # the same inputs at every layer: the seed fixes them
            rows = vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), max_points, replace=False))]
        id_points.append(len(rows))
        duplicates[layer_index] = distinct_rows(rows)[1]  # counted here; the fit removes them again (cheap)
        return {metric: lambda: intrinsic_dimension(rows, opts["id_method"], fraction=opts["id_fraction"],
                                                    device=device)}
    if metric == "dataset_entropy":
        return {metric: lambda: matrix_entropy(vectors, alpha=opts["entropy_alpha"], variant=opts["entropy_variant"],
                                               normalize=opts["entropy_normalize"], device=device)}
    eig = layer.spectrum
    if metric == "effective_rank":
        return {metric: lambda: effective_rank_from_spectrum(eig, len(vectors))}
    return {  # separately: constant rows have no covariance share but a defined mean cosine
        "anisotropy_mean_cosine": lambda: mean_cosine(vectors, opts["anisotropy_n_pairs"], seed),
        "anisotropy_top_eigenvalue_share": lambda: top_share_from_spectrum(eig, len(vectors)),
    }


def _compute_geometry(
    acts: Activations | Mapping[str, np.ndarray],
    layer_names: tuple[str, ...],
    metric_names: tuple[str, ...],
    opts: dict[str, Any],
    seed: int,
    max_points: int,
    params: dict[str, Any],
    progress: Progress | None,
) -> GeometryResult:
    device = pick_device(opts["device"])
    is_tokens = isinstance(acts, Activations) and acts.is_tokens
    offsets = acts.offsets if is_tokens else None
    out_names = tuple(name for m in metric_names for name in RESULT_METRICS[m])
    n_layers = len(layer_names)
    mean = {m: np.full(n_layers, np.nan) for m in out_names}
    q25 = {m: np.full(n_layers, np.nan) for m in out_names}
    q75 = {m: np.full(n_layers, np.nan) for m in out_names}
    n_skipped = {m: np.zeros(n_layers, dtype=np.int64) for m in out_names}
    layer_reasons: dict[str, list[str | None]] = {m: [None] * n_layers for m in out_names}
    id_points: list[int] = []
    duplicates = np.zeros(n_layers, dtype=np.int64)
    total, done = n_layers * len(metric_names), 0

    for li, layer in enumerate(layer_names):
        X = acts[layer] if isinstance(acts, Activations) else as_matrix(acts[layer], f"acts[{layer!r}]")
        pooled = _PooledLayer(X, offsets, device)
        for metric in metric_names:
            try:
                if metric in PER_INPUT_METRICS:
                    if not is_tokens:
                        raise LayerscopeError(f"needs pooling='tokens' (this run used pooling={params['pooling']!r})")
                    values, reason = _per_input_values(metric, X, offsets, opts, device)
                    n_skipped[metric][li] = int(np.isnan(values).sum())
                    layer_reasons[metric][li] = reason
                    if n_skipped[metric][li] < len(values):
                        mean[metric][li] = float(np.nanmean(values))
                        q25[metric][li], q75[metric][li] = np.nanpercentile(values, [25, 75])
                else:
                    values_by_name = _dataset_values(metric, pooled, opts, seed, max_points, id_points, duplicates,
                                                     li, device)
                    for name, compute_value in values_by_name.items():
                        try:
                            mean[name][li] = compute_value()
                            if pooled.dropped:
                                n_skipped[name][li] = pooled.dropped
                                layer_reasons[name][li] = f"{pooled.dropped} input(s) without tokens left out"
                        except LayerscopeError as err:
                            layer_reasons[name][li] = str(err)
                            logger.info("geometry %s at layer %s: %s", name, layer, err)
            except LayerscopeError as err:
                for name in RESULT_METRICS[metric]:
                    layer_reasons[name][li] = str(err)
                logger.info("geometry %s at layer %s: %s", metric, layer, err)
            done += 1
            report(progress, done, total, f"{metric} at layer {layer}")

    return GeometryResult(
        layer_names=layer_names,
        metrics=out_names,
        mean=mean,
        q25=q25,
        q75=q75,
        n_skipped=n_skipped,
        reasons={m: _summarise_layer_reasons(layer_names, layer_reasons[m]) for m in out_names},
        layer_reasons={m: tuple(r) for m, r in layer_reasons.items()},
        params={**params, "id_points_used": id_points, "device": str(device)},
        n_duplicates=duplicates if "intrinsic_dimension" in metric_names else None,
    )
