"""Mutual k-nearest neighbours (Huh et al. 2024, platonic-rep metrics.py).

Rows are unit-normalised, neighbours found by inner product with self excluded, and the
score is the mean over inputs of |N_A(i) & N_B(i)| / k. ``clip_quantile=0.95`` first
clamps every entry to +-t, t = the mean over rows of each row's 0.95 quantile of |x|
(platonic-rep ``remove_outliers(q, exact=False)``; they apply it to all of a model's layers
stacked, here it is per layer). Off by default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from core.analysis.similarity.centring import constant_error
from core.analysis.similarity.registry import Metric, pair_value, register_metric
from core.errors import LayerscopeError
from core.validation import check_int, check_number

BLOCK_BYTES = 256 * 2**20  # float64 working set of one block of similarity rows


def _clip_rows(X: torch.Tensor, q: float) -> torch.Tensor:
    """Clamp to +-t, t = mean over rows of each row's q-quantile of |x| (platonic-rep `remove_outliers`)."""
    if q >= 1.0:
        return X
    step = max(1, (2**24 - 1) // X.shape[1])  # torch.quantile takes at most 2^24 elements at once
    quantiles = torch.cat(
        [torch.quantile(X[i : i + step].abs(), q, dim=1) for i in range(0, X.shape[0], step)]
    )
    t = quantiles.mean()
    return X.clamp(-t, t)


def knn_indices(X: torch.Tensor, name: str, k: int, clip_quantile: float | None) -> torch.Tensor:
    """(n, k) indices of each row's k nearest rows by inner product of unit rows, self excluded."""
    n = X.shape[0]
    if clip_quantile is not None:
        X = _clip_rows(X, clip_quantile)
    norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    zero = int((norms[:, 0] == 0).sum())
    if zero == n:
        raise constant_error(name, n, "every row is zero and has no direction for nearest neighbours")
    if zero:
        raise LayerscopeError(
            f"{name} has {zero} all-zero rows (of {n}); they have no direction, so their nearest neighbours "
            "would be arbitrary"
        )
    Z = X / norms
    if bool((Z == Z[0]).all()):
        raise constant_error(name, n, "every input points the same way and nearest neighbours are all ties")
    step = max(1, BLOCK_BYTES // (8 * n))
    out = torch.empty((n, k), dtype=torch.long, device=X.device)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        sims = Z[i0:i1] @ Z.T  # (b, n)
        sims[torch.arange(i1 - i0, device=X.device), torch.arange(i0, i1, device=X.device)] = -math.inf
        out[i0:i1] = torch.topk(sims, k, dim=1).indices
    return out


def _knn_pair(a: torch.Tensor, b: torch.Tensor) -> float:
    n, k = a.shape
    shared = (a[:, :, None] == b[:, None, :]).sum()
    return float(shared) / (n * k)


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    k = check_int("k", params["k"], low=1)  # neighbours per input
    clip = params["clip_quantile"]  # None: no clipping; platonic-rep uses 0.95
    if clip is not None:
        clip = check_number("clip_quantile", clip, low=0, low_open=True, high=1)
    return {"k": k, "clip_quantile": clip}


def _check_n(n: int, params: Mapping[str, Any]) -> None:
    k = params["k"]
    if k >= n:
        raise LayerscopeError(
            f"k={k} must be smaller than the number of inputs n={n} (each input has n - 1 = {n - 1} neighbours); "
            "lower k or compare more inputs"
        )


def _variant(params: Mapping[str, Any]) -> str:
    clip = params["clip_quantile"]
    return f"k={params['k']}, " + ("no clipping" if clip is None else f"clipped at q={clip:g}")


def mutual_knn(
    X: Any, Y: Any, *, k: int = 10, clip_quantile: float | None = None, device: str | torch.device | None = None
) -> float:
    """Mean share of each input's k nearest neighbours (unit rows, inner product) that X and Y agree on.

    X (n, d1), Y (n, d2); needs n > k. Identical or rotated data give 1, unrelated data about k / (n - 1).
    """
    return pair_value("mutual_knn", X, Y, device, k=k, clip_quantile=clip_quantile)


register_metric(Metric(
    name="mutual_knn",
    function=mutual_knn,
    prepare=lambda X, name, params: knn_indices(X, name, params["k"], params["clip_quantile"]),
    compare=_knn_pair,
    short_name="mutual k-NN",
    description="share of k nearest neighbours both representations agree on (Huh et al. 2024)",
    defaults={"k": 10, "clip_quantile": None},
    check_params=_check_params,
    check_n=_check_n,
    prepared_bytes=lambda n, d, params: 8 * n * params["k"],
    variant=_variant,
))
