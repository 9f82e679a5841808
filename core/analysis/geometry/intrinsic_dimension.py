"""Intrinsic dimension by TwoNN (Facco et al. 2017), as dadapy ``compute_id_2NN``
(lowest 90% of mu, least squares through the origin), or its maximum-likelihood form.
Duplicate points are removed first (dadapy keeps them); `distinct_rows` counts them.

Nearest-neighbour candidates are found in float32 (fast, GPU-friendly) and their
distances recomputed exactly in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.analysis.arrays import as_float64, as_matrix
from core.analysis.geometry import _rows
from core.device import pick_device
from core.errors import LayerscopeError
from core.validation import check_choice, check_number

ID_METHODS = ("twonn", "mle")
MIN_ID_POINTS = 20
_ID_CANDIDATES = 8  # float32 neighbour candidates re-ranked with exact float64 distances


def _two_nearest_distances(points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances (N,), (N,) of each point to its first and second nearest neighbour.

    points: (N, d) float64 tensor, distinct rows. Candidates come from float32 squared
    distances; the best few are re-ranked with exact float64 differences.
    """
    n, d = points.shape
    device = points.device
    x64 = points
    x32 = x64.float()
    sq = (x32 * x32).sum(dim=1)
    k = min(_ID_CANDIDATES, n - 1)
    step = max(1, min(_rows.CHUNK_BYTES // (4 * n), _rows.CHUNK_BYTES // (8 * k * d)))
    nearest = torch.empty((n, 2), dtype=torch.float64, device=device)
    for start in range(0, n, step):
        stop = min(n, start + step)
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (x32[start:stop] @ x32.T)  # (b, N)
        d2[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")
        candidates = torch.topk(d2, k, dim=1, largest=False).indices  # (b, k)
        exact = torch.linalg.vector_norm(x64[start:stop, None, :] - x64[candidates], dim=2)  # (b, k)
        nearest[start:stop] = torch.topk(exact, 2, dim=1, largest=False, sorted=True).values
    out = nearest.cpu().numpy()
    return out[:, 0], out[:, 1]


def _id_from_ratios(mu: np.ndarray, method: str, fraction: float) -> float:
    """TwoNN linear fit or MLE from the ratios mu = r2 / r1 (N,)."""
    n = len(mu)
    log_mu = np.sort(np.log(mu))
    if method == "mle":
        total = float(log_mu.sum())
        if total <= 0:
            raise LayerscopeError(
                f"intrinsic_dimension (mle) is undefined: all {n} points have r2 == r1 "
                "(every point's two nearest neighbours are equally far; lattice-like data)"
            )
        return (n - 1) / total
    n_kept = int(n * fraction)
    if n_kept < 2:
        raise LayerscopeError(f"fraction={fraction} keeps {n_kept} of {n} points; the TwoNN fit needs at least 2")
    x = log_mu[:n_kept]
    y = -np.log1p(-np.arange(1, n_kept + 1) / n)  # -log(1 - F_i), F_i = i / N
    sxx = float(x @ x)
    if sxx == 0:
        raise LayerscopeError(
            f"intrinsic_dimension (twonn) is undefined: the {n_kept} kept points all have r2 == r1 "
            "(lattice-like data)"
        )
    return float(x @ y) / sxx


def check_fraction(name: str, fraction: Any) -> float:
    """The share of smallest mu kept by the TwoNN fit, strictly between 0 and 1 (dadapy: 0.9)."""
    return check_number(name, fraction, low=0, high=1, low_open=True, high_open=True)


def distinct_rows(X: Any) -> tuple[np.ndarray, int]:
    """(distinct rows of X (m, d) as float64, number of duplicate rows removed: n - m).

    TwoNN needs r1 > 0: a point with an exact copy has r1 = 0 and mu = inf (dadapy keeps
    duplicates, and its fit fails once they are common).
    """
    array = as_matrix(X)
    points = np.unique(as_float64(array, "X", _rows.WHAT), axis=0)
    return points, len(array) - len(points)


def intrinsic_dimension(
    X: Any, method: str = "twonn", *, fraction: float = 0.9, device: str | torch.device | None = None
) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017) of the rows of X.

    X: (n, d). Duplicate rows are removed first (`distinct_rows`); mu_i = r2 / r1 with exact
    Euclidean kNN. method="twonn": least-squares slope through the origin of
    -log(1 - i/N) against the sorted log(mu_i), keeping the lowest `fraction` of mu
    (dadapy `compute_id_2NN`, skdim `TwoNN(discard_fraction=1 - fraction)`).
    method="mle": (N - 1) / sum log(mu_i) over all points (`fraction` unused).
    Raises LayerscopeError for fewer than 20 distinct rows. Note: a uniform k-cube reads
    low from boundary effects (k=10, N=2500: about 8.2, skdim alike); a Gaussian on a k-dim
    subspace or the k-sphere give about k.
    """
    method = check_choice("method", method, ID_METHODS)
    fraction = check_fraction("fraction", fraction)
    array = as_matrix(X)
    points, _ = distinct_rows(array)
    if len(points) < MIN_ID_POINTS:
        detail = "all rows are identical" if len(points) == 1 else f"only {len(points)} are distinct"
        raise LayerscopeError(
            f"intrinsic_dimension needs at least {MIN_ID_POINTS} distinct points; X has {len(array)} rows and "
            f"{detail}"
        )
    points = torch.from_numpy(points).to(pick_device(device))
    points = points - _rows.exact_mean(points)  # distances are translation invariant; centring helps float32
    r1, r2 = _two_nearest_distances(points)
    return float(_id_from_ratios(r2 / r1, method, fraction))
