"""Resampling bands over inputs for the dataset-level geometry metrics: intrinsic dimension, dataset
entropy and effective rank, at every layer of a run.

Dataset entropy and effective rank: the bootstrap, inputs resampled with replacement
(`numpy.random.default_rng(bootstrap_seed).integers(0, n, n)` per resample). Intrinsic
dimension (TwoNN, MLE): a copy of an input is at distance 0 from it, so a resample with
replacement would be full of r1 = 0; it is measured on subsamples of `subsample` (default
80%) of the inputs drawn without replacement instead (subsampling, Politis & Romano 1994).
Its band is the spread of the estimate on 80% of the inputs: somewhat wider than the
spread at all n. The same resamples serve every layer. The band is the percentile
interval at `level` of the resampled values.

Repeated inputs add no direction to a spectrum: when the number of inputs is not much
larger than the width, a resample has lower rank and entropy and effective rank read low,
so the band can sit below the value on all inputs. `GeometryBands.reasons` says where.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.activations import Activations
from core.analysis.arrays import as_matrix
from core.analysis.geometry.by_layer import _check_options, _PooledLayer, run_layers
from core.analysis.geometry.intrinsic_dimension import MIN_ID_POINTS, intrinsic_dimension
from core.analysis.geometry.spectrum import effective_rank, matrix_entropy
from core.device import pick_device
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.store import Store
from core.validation import check_choice, check_int, check_number

BAND_METRICS = ("intrinsic_dimension", "dataset_entropy", "effective_rank")
DEFAULT_N_BOOT = 50  # every resample recomputes the metric at every layer
DEFAULT_LEVEL = 0.95
DEFAULT_SUBSAMPLE = 0.8
BANDS_VERSION = 1  # bump when the resampling or a formula changes: invalidates stored bands
KIND = "geometry_bands"


def band_name(metric: str, params: Mapping[str, Any]) -> str:
    """How legends, captions and sidecars name a metric's band."""
    level = f"{params['level'] * 100:g}%"
    if metric == "intrinsic_dimension":
        return (f"{level} interval over {params['n_boot']} subsamples of {params['subsample']:.0%} of inputs "
                "(without replacement)")
    return f"{level} bootstrap interval over inputs, {params['n_boot']} resamples"


@dataclass(frozen=True, eq=False)
class GeometryBands:
    """Percentile bands of dataset-level geometry metrics over resampled inputs, per layer."""

    layer_names: tuple[str, ...]  # layers in model order
    metrics: tuple[str, ...]  # some of BAND_METRICS
    low: dict[str, np.ndarray]  # metric -> (n_layers,) lower end of the band, NaN where undefined
    high: dict[str, np.ndarray]  # metric -> (n_layers,) upper end
    full: dict[str, np.ndarray]  # metric -> (n_layers,) the value on all inputs (as GeometryResult.mean)
    n_valid: dict[str, np.ndarray]  # metric -> (n_layers,) int, resamples where the metric was defined
    reasons: dict[str, str | None] = field(default_factory=dict)  # metric -> what to know about its band
    params: dict[str, Any] = field(default_factory=dict)  # run, options, n_boot, level, subsample, seeds, version

    def name(self, metric: str) -> str:
        """The band of `metric` in words, e.g. "95% bootstrap interval over inputs, 50 resamples"."""
        return band_name(metric, self.params)


def _check_band_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not names:
        raise LayerscopeError(f"metrics=[] must name at least one of: {', '.join(BAND_METRICS)}")
    return tuple(dict.fromkeys(check_choice("metrics", m, BAND_METRICS) for m in names))


def geometry_bands(
    acts: Activations | Mapping[str, np.ndarray],
    metrics: Sequence[str] = BAND_METRICS,
    *,
    store: Store | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    subsample: float = DEFAULT_SUBSAMPLE,
    bootstrap_seed: int = 0,
    seed: int = 0,
    max_points: int = 5000,
    progress: Progress | None = None,
    stored_only: bool = False,
    **options: Any,
) -> GeometryBands | None:
    """Bands over resampled inputs of intrinsic dimension, dataset entropy and effective rank at every layer.

    acts: an Activations run (a tokens run uses each input's mean token) or {layer: (n, d)}.
    n_boot: resamples (each recomputes every metric at every layer). level: the band's coverage.
    subsample: share of inputs in each intrinsic-dimension subsample, drawn without replacement.
    bootstrap_seed: the resamples' seed. seed, max_points, options: as geometry_by_layer (the
    intrinsic dimension uses the same at most max_points inputs, drawn with seed).
    With `store` (an Activations run) bands are cached under kind "geometry_bands";
    stored_only=True only looks them up (None when absent). progress(done, total, message)
    is called after each resample.
    """
    metric_names = _check_band_metrics(metrics)
    opts = _check_options(options)
    n_boot = check_int("n_boot", n_boot, low=10)
    level = check_number("level", level, low=0, high=1, low_open=True, high_open=True)
    subsample = check_number("subsample", subsample, low=0, high=1, low_open=True, high_open=True)
    bootstrap_seed = check_int("bootstrap_seed", bootstrap_seed, low=0)
    seed = check_int("seed", seed)
    max_points = check_int("max_points", max_points, low=MIN_ID_POINTS)
    is_run, layer_names = run_layers(acts)
    params = {
        "run": acts.key if is_run else None,
        "layers": list(layer_names),
        "pooling": acts.pooling if is_run else "pooled arrays",
        "metrics": list(metric_names),
        **{k: v for k, v in opts.items() if k not in ("device", "curvature_variant", "curvature_degenerate",
                                                       "anisotropy_n_pairs")},
        "n_boot": n_boot,
        "level": level,
        "subsample": subsample,
        "bootstrap_seed": bootstrap_seed,
        "seed": seed,
        "max_points": max_points,
        "resampling": {"intrinsic_dimension": "subsamples without replacement, "
                       "numpy.random.default_rng(bootstrap_seed).choice(n, round(subsample * n), replace=False)",
                       "spectral": "inputs with replacement, numpy.random.default_rng(bootstrap_seed).integers(0, n, n)"},
        "interval": "percentile",
        "version": BANDS_VERSION,
    }

    def compute() -> GeometryBands:
        return _compute_bands(acts, layer_names, metric_names, opts, params, progress)

    if store is None:
        return compute()
    if not is_run:
        raise LayerscopeError("caching with store= needs an Activations run (its key names the entry); "
                              "pass store=None for a mapping of arrays")
    if stored_only:
        return store.lookup(KIND, params, GeometryBands)
    return store.cached(KIND, params, compute, GeometryBands)


def _value_or_nan(measure: Callable[[np.ndarray], float], Z: np.ndarray) -> float:
    try:
        return float(measure(Z))
    except LayerscopeError:  # undefined on this resample (e.g. too few distinct points): left out of the band
        return float("nan")


def _compute_bands(
    acts: Activations | Mapping[str, np.ndarray],
    layer_names: tuple[str, ...],
    metric_names: tuple[str, ...],
    opts: dict[str, Any],
    params: dict[str, Any],
    progress: Progress | None,
) -> GeometryBands:
    device = pick_device(opts["device"])
    offsets = acts.offsets if isinstance(acts, Activations) and acts.is_tokens else None
    L, B = len(layer_names), params["n_boot"]
    shape = (L,)
    low, high, full = ({m: np.full(shape, np.nan) for m in metric_names} for _ in range(3))
    n_valid = {m: np.zeros(shape, dtype=np.int64) for m in metric_names}
    outside: dict[str, list[str]] = {m: [] for m in metric_names}
    tails = [(1 - params["level"]) / 2, (1 + params["level"]) / 2]
    draws: dict[tuple[str, int], list[np.ndarray]] = {}  # the same resamples at every layer

    def resamples(kind: str, n: int) -> list[np.ndarray]:
        if (kind, n) not in draws:
            rng = np.random.default_rng(params["bootstrap_seed"])
            if kind == "subsample":
                m = max(2, round(params["subsample"] * n))
                draws[kind, n] = [np.sort(rng.choice(n, m, replace=False)) for _ in range(B)]
            else:
                draws[kind, n] = [rng.integers(0, n, n) for _ in range(B)]
        return draws[kind, n]

    total, done = L * len(metric_names) * B, 0
    for li, layer in enumerate(layer_names):
        X = acts[layer] if isinstance(acts, Activations) else as_matrix(acts[layer], f"acts[{layer!r}]")
        vectors = np.asarray(_PooledLayer(X, offsets, device).vectors)
        for metric in metric_names:
            if metric == "intrinsic_dimension":
                rows = vectors
                if len(rows) > params["max_points"]:  # the rows geometry_by_layer fits, by the same rule
                    pick = np.random.default_rng(params["seed"]).choice(len(rows), params["max_points"], replace=False)
                    rows = rows[np.sort(pick)]

                def measure(Z: np.ndarray) -> float:
                    return intrinsic_dimension(Z, opts["id_method"], fraction=opts["id_fraction"], device=device)

                indices = resamples("subsample", len(rows))
            else:
                rows = vectors
                if metric == "dataset_entropy":
                    def measure(Z: np.ndarray) -> float:
                        return matrix_entropy(Z, alpha=opts["entropy_alpha"], variant=opts["entropy_variant"],
                                              normalize=opts["entropy_normalize"], device=device)
                else:
                    def measure(Z: np.ndarray) -> float:
                        return effective_rank(Z, device=device)

                indices = resamples("replacement", len(rows))
            full[metric][li] = _value_or_nan(measure, rows)
            values = np.full(B, np.nan)
            for b, index in enumerate(indices):
                values[b] = _value_or_nan(measure, rows[index])
                done += 1
                report(progress, done, total, f"{metric} at layer {layer}: resample {b + 1}/{B}")
            finite = values[np.isfinite(values)]
            n_valid[metric][li] = len(finite)
            if len(finite) * 2 >= B:  # a band from fewer than half the resamples would say little
                low[metric][li], high[metric][li] = np.quantile(finite, tails)
                if np.isfinite(full[metric][li]) and not low[metric][li] <= full[metric][li] <= high[metric][li]:
                    outside[metric].append(layer)
    reasons = {m: _reason(m, outside[m], n_valid[m], B, layer_names, params["subsample"]) for m in metric_names}
    return GeometryBands(layer_names=layer_names, metrics=metric_names, low=low, high=high, full=full,
                         n_valid=n_valid, reasons=reasons, params={**params, "device": str(device)})


def _reason(metric: str, outside: list[str], n_valid: np.ndarray, n_boot: int, layer_names: tuple[str, ...],
            subsample: float) -> str | None:
    """What to know about a metric's band: layers without one, layers whose value on all inputs lies outside it."""
    parts = []
    missing = [layer for layer, v in zip(layer_names, n_valid) if v * 2 < n_boot]
    if missing:
        parts.append(f"no band at {', '.join(missing)} (the metric is undefined on more than half the resamples)")
    if outside:
        why = ("repeated inputs add no direction, so a resample's spectrum has lower rank; this happens when "
               "there are not many more inputs than dimensions" if metric != "intrinsic_dimension" else
               f"the estimate on {subsample:.0%} of the inputs differs from the one on all of them")
        parts.append(f"the value on all inputs lies outside the band at {', '.join(outside)}: {why}")
    return "; ".join(parts) or None
