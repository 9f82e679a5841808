"""Bootstrap intervals over inputs for probe scores, and the paired test of best layer vs last layer.

Each input is predicted once, by the fold model that did not see it (ProbeResult.held_out),
so a resample of the inputs needs no refit: the held-out score is recomputed from the
resampled (prediction, label) pairs. Accuracy is the share of correct predictions; R^2 is
1 - sum (y - yhat)^2 / sum (y - mean y)^2 over the resample (sklearn's r2_score on the
pooled out-of-fold predictions). A resample with replacement is drawn as counts per input
(`numpy.random.default_rng(seed).integers(0, n, n)` per resample, counted), so every layer
is scored on the same resamples with a few matrix products.

The interval is the percentile interval (Efron & Tibshirani 1993, ch. 13) of the bootstrap
scores at `level`. Best vs last: the difference of the two layers' scores on the same
resamples (paired); one-sided p-value (1 + #{difference* <= 0}) / (1 + n_boot) for
"the best layer scores higher than the last". The best layer is picked on the same data
(ProbeResult.best_layer, by the mean over folds), so the test is conditional on that
choice and errs towards small p-values when several layers score alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.analysis.probes.result import ProbeResult
from core.errors import LayerscopeError
from core.validation import check_int, check_number

DEFAULT_N_BOOT = 1000
DEFAULT_LEVEL = 0.95
_CHUNK_CELLS = 4_000_000  # resamples x inputs counted at once (32 MB of float64 counts)


def interval_name(level: float, n_boot: int) -> str:
    """How legends, captions and sidecars name the interval: "95% bootstrap interval over inputs, 1000 resamples"."""
    return f"{level * 100:g}% bootstrap interval over inputs, {n_boot} resamples"


def difference_words(difference: float, low: float, high: float, p_value: float) -> str:
    """A difference with its interval and p-value: "+0.120 [+0.080, +0.160], p = 0.001"."""
    return f"{difference:+.3f} [{low:+.3f}, {high:+.3f}], p = {p_value:.2g}"


@dataclass(frozen=True, eq=False)
class ProbeInterval:
    """Percentile bootstrap intervals of the held-out score of each layer, and best layer vs last layer."""

    layer_names: tuple[str, ...]  # layers, as in the ProbeResult
    metric: str  # "accuracy" or "r2"
    estimate: np.ndarray  # (n_layers,) the score of the pooled out-of-fold predictions of all inputs
    low: np.ndarray  # (n_layers,) lower end of the percentile interval
    high: np.ndarray  # (n_layers,) upper end
    best_layer: str  # ProbeResult.best_layer (highest mean over folds)
    last_layer: str  # the last probed layer
    difference: float  # estimate[best] - estimate[last]
    difference_low: float  # percentile interval of the paired bootstrap difference
    difference_high: float
    p_value: float  # one-sided: (1 + #{difference* <= 0}) / (1 + n_boot)
    params: dict[str, Any] = field(default_factory=dict)  # level, n_boot, seed, resampling, interval

    @property
    def name(self) -> str:
        """The interval in words, e.g. "95% bootstrap interval over inputs, 1000 resamples"."""
        return interval_name(self.params["level"], self.params["n_boot"])

    def best_vs_last(self) -> str:
        """"+0.120 [0.080, 0.160], p = 0.001", or why there is no test."""
        if self.best_layer == self.last_layer:
            return "the best layer is the last layer"
        return difference_words(self.difference, self.difference_low, self.difference_high, self.p_value)


def _scores(result: ProbeResult, counts: np.ndarray) -> np.ndarray:
    """(n_layers, B) held-out score of every layer on B resamples given as counts (B, n)."""
    if result.metric == "accuracy":
        correct = (result.held_out == result.held_out_target[None, :]).astype(np.float64)  # (L, n)
        return correct @ counts.T / result.n
    y = np.asarray(result.held_out_target, dtype=np.float64)  # (n,)
    squared = (np.asarray(result.held_out, dtype=np.float64) - y) ** 2  # (L, n)
    residual = squared @ counts.T  # (L, B)
    total = counts @ (y * y) - (counts @ y) ** 2 / result.n  # (B,) sum of squares about the resample's mean
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - residual / total
    # sklearn's force_finite: a resample with constant targets scores 1 if predicted exactly, else 0
    return np.where(total > 1e-12 * max(float(y @ y), 1e-300), r2, np.where(residual == 0, 1.0, 0.0))


def resample_counts(n: int, n_boot: int, seed: int):
    """Blocks of (b, n) float64 counts: how often each of n inputs is drawn in each of n_boot resamples."""
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        drawn = rng.integers(0, n, size=(b, n))  # indices of a resample with replacement
        flat = (drawn + n * np.arange(b)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def probe_interval(
    result: ProbeResult, *, level: float = DEFAULT_LEVEL, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> ProbeInterval:
    """Percentile bootstrap interval over inputs of each layer's held-out score, and best vs last layer.

    result: a ProbeResult holding out-of-fold predictions (PROBE_VERSION >= 3).
    level: coverage of the interval, in (0, 1). n_boot: resamples. seed: the resamples' seed.
    """
    level = check_number("level", level, low=0, high=1, low_open=True, high_open=True)
    n_boot = check_int("n_boot", n_boot, low=10)
    seed = check_int("seed", seed, low=0)
    if not result.has_held_out:
        raise LayerscopeError(
            "this probe result was stored before out-of-fold predictions were kept, so it has no bootstrap "
            "interval; probe again (probe_by_layer_cached recomputes it)"
        )
    n = result.n
    full = _scores(result, np.ones((1, n)))[:, 0]  # (L,)
    boot = np.concatenate([_scores(result, counts) for counts in resample_counts(n, n_boot, seed)], axis=1)
    tails = [(1 - level) / 2, (1 + level) / 2]
    low, high = np.quantile(boot, tails, axis=1)  # (L,) each
    best = result.layer_names.index(result.best_layer)
    last = len(result.layer_names) - 1
    paired = boot[best] - boot[last]  # (n_boot,) the same resamples for both layers
    diff_low, diff_high = np.quantile(paired, tails)
    p_value = (1 + int((paired <= 0).sum())) / (1 + n_boot) if best != last else 1.0
    params = {
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "interval": interval_name(level, n_boot),
        "method": "percentile interval of the score of resampled out-of-fold predictions",
        "resampling": "inputs with replacement, numpy.random.default_rng(seed).integers(0, n, n) per resample",
        "test": "paired bootstrap of best layer minus last layer; p = (1 + #{diff* <= 0}) / (1 + n_boot)",
        "probe": dict(result.params),
    }
    return ProbeInterval(
        layer_names=tuple(result.layer_names),
        metric=result.metric,
        estimate=full,
        low=np.asarray(low, dtype=np.float64),
        high=np.asarray(high, dtype=np.float64),
        best_layer=result.best_layer,
        last_layer=result.layer_names[last],
        difference=float(full[best] - full[last]),
        difference_low=float(diff_low),
        difference_high=float(diff_high),
        p_value=float(p_value),
        params=params,
    )
