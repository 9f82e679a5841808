"""Bootstrap confidence intervals over inputs for a similarity cell or matrix.

Each resample draws n inputs with replacement (the same inputs for both runs, so rows stay
aligned) and recomputes the matrix; the interval is the percentile interval of the resampled
values at `level` (Efron & Tibshirani 1993, ch. 13). It does not correct bias: a metric
biased at finite n (linear CKA rises with width / n) has its interval shifted the same way.

Duplicated inputs: for mutual k-NN and RSA a resample keeps each drawn input once
(`duplicates="dropped"`, about 63% of n distinct inputs). A duplicated input would be its
own copy's nearest neighbour in both runs (a shared neighbour for free) and give an RDM
entry of 0 on both sides (a shared extreme rank), so both metrics would rise with the
number of duplicates. The interval then describes the metric on ~0.63 n inputs: for mutual
k-NN, whose chance level is k / (n - 1), that makes it somewhat wider and lower-centred
than at n. CKA, SVCCA and Procrustes treat a duplicate as a weight and keep them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core.activations import Activations
from core.analysis.similarity.calibration import BootstrapResult, compared_rows, layer_rows
from core.analysis.similarity.matrix import DEFAULT_MAX_POINTS, SIMILARITY_VERSION, Layers, similarity_matrix
from core.analysis.similarity.registry import get_metric
from core.device import pick_device
from core.progress import Progress, report
from core.store import Store
from core.validation import check_int, check_number

BOOTSTRAP_VERSION = 1  # bump when the resampling conventions change: invalidates cached intervals
DEFAULT_BOOT = 200
DEFAULT_LEVEL = 0.95
BOOTSTRAP_STREAM = 2  # second seed word of the resamples (the row subsample uses the seed alone)
DROP_DUPLICATES = frozenset({"mutual_knn", "rsa"})  # metrics that read a duplicate as a perfect match


def bootstrap_similarity(
    acts_a: Layers,
    acts_b: Layers,
    metric: str = "linear_cka",
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    n_boot: int = DEFAULT_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    max_points: int | None = DEFAULT_MAX_POINTS,
    store: Store | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
    **params: Any,
) -> BootstrapResult:
    """`similarity_matrix(...)` with a percentile bootstrap interval over inputs per cell.

    Inputs, layers, rows (`seed`, `max_points`) and metric parameters as `similarity_matrix`;
    resamples are drawn from (seed, BOOTSTRAP_STREAM). Each resample recomputes the matrix of
    the chosen layers, so ask for the layers you need (one cell: one layer each). With `store`
    (Activations runs) the result is cached under kind "similarity_bootstrap".
    progress(done, total, what) counts resamples.
    """
    chosen = get_metric(metric)
    filled = chosen.fill_params(params)
    n_boot = check_int("n_boot", n_boot, low=2)
    level = check_number("level", level, low=0, low_open=True, high=1, high_open=True)
    observed = similarity_matrix(acts_a, acts_b, chosen.name, layers_a=layers_a, layers_b=layers_b, store=store,
                                 seed=seed, max_points=max_points, device=device, **filled)
    n = observed.n
    chosen.check_inputs(n, filled)
    drop = chosen.name in DROP_DUPLICATES

    def compute() -> BootstrapResult:
        rows = compared_rows(observed.n_inputs, observed.seed, observed.max_points)
        data_a = {layer: layer_rows(acts_a, layer, rows) for layer in observed.layers_a}
        data_b = {layer: layer_rows(acts_b, layer, rows) for layer in observed.layers_b}
        rng = np.random.default_rng([observed.seed, BOOTSTRAP_STREAM])
        dev = pick_device(device)
        draws = np.full((n_boot, len(data_a), len(data_b)), np.nan)
        for t in range(n_boot):
            picked = rng.integers(0, n, n)
            if drop:
                picked = np.unique(picked)
            draws[t] = similarity_matrix({k: X[picked] for k, X in data_a.items()},
                                         {k: X[picked] for k, X in data_b.items()}, chosen.name, max_points=None,
                                         device=dev, **filled).matrix
            report(progress, t + 1, n_boot, f"resample {t + 1} of {n_boot}")
        tail = 100.0 * (1.0 - level) / 2.0
        with warnings.catch_warnings():  # an all-NaN cell's interval is NaN, as intended
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(draws, [tail, 100.0 - tail], axis=0)
        undefined = int(np.isnan(draws).all(axis=(1, 2)).sum())
        return BootstrapResult(
            metric=chosen.name, params=dict(observed.params), layers_a=observed.layers_a,
            layers_b=observed.layers_b, observed=observed.matrix, low=low, high=high,
            draws=draws.astype(np.float32), level=level, n_boot=n_boot, seed=observed.seed,
            duplicates="dropped" if drop else "kept", run_a=observed.run_a, run_b=observed.run_b, n=n,
            n_inputs=observed.n_inputs, max_points=observed.max_points,
            info={**observed.info, "interval": "percentile", "undefined_resamples": undefined,
                  "version": BOOTSTRAP_VERSION},
        )

    if store is None or not all(isinstance(acts, Activations) for acts in (acts_a, acts_b)):
        return compute()
    key = {"run_a": acts_a.key, "run_b": acts_b.key, "metric": chosen.name, **filled,
           "layers_a": list(observed.layers_a), "layers_b": list(observed.layers_b), "seed": observed.seed,
           "max_points": observed.max_points, "n_boot": n_boot, "level": level,
           "version": [SIMILARITY_VERSION, BOOTSTRAP_VERSION]}
    result = store.cached("similarity_bootstrap", key, compute, BootstrapResult)
    report(progress, n_boot, n_boot, "bootstrap loaded")
    return result

