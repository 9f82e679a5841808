"""Representational similarity analysis: Spearman correlation of the upper triangles of the
two representational dissimilarity matrices (RDM entry = 1 - Pearson r between two inputs)."""

from __future__ import annotations

from typing import Any

import torch

from core.analysis.similarity.centring import constant_error
from core.analysis.similarity.registry import Metric, pair_value, register_metric, triangle_bytes
from core.errors import LayerscopeError


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks of v with ties given their average rank (scipy.stats.rankdata 'average')."""
    order = torch.argsort(v)
    _, inverse, counts = torch.unique_consecutive(v[order], return_inverse=True, return_counts=True)
    counts = counts.to(torch.float64)
    ranks = torch.empty_like(v)
    ranks[order] = (torch.cumsum(counts, 0) - (counts - 1.0) / 2.0)[inverse]
    return ranks


def rsa_vector(X: torch.Tensor, name: str) -> torch.Tensor:
    """(n (n - 1) / 2,) centred, unit-norm ranks of the RDM's upper triangle of X (n, d)."""
    n, d = X.shape
    if bool((X == X[0]).all()):
        raise constant_error(name, n, "its RDM is constant and has no ranking to correlate")
    if d < 2:
        raise LayerscopeError(f"{name} has {d} feature; the correlation between two inputs needs at least 2")
    constant = X.amin(dim=1) == X.amax(dim=1)
    if bool(constant.any()):
        raise LayerscopeError(
            f"{name} has {int(constant.sum())} inputs (of {n}) whose activations are equal across all features; "
            "their correlation distance (RDM entry) is undefined"
        )
    Xr = X - X.mean(dim=1, keepdim=True)
    Z = Xr / torch.linalg.vector_norm(Xr, dim=1, keepdim=True)
    rdm = 1.0 - Z @ Z.T  # (n, n)
    upper = rdm[torch.ones(n, n, dtype=torch.bool, device=X.device).triu(1)]
    del rdm
    ranks = _average_ranks(upper)
    ranks -= ranks.mean()
    norm = torch.linalg.vector_norm(ranks)
    if norm == 0:
        raise constant_error(name, n, "its RDM is constant and has no ranking to correlate")
    return ranks / norm


def _dot_pair(a: torch.Tensor, b: torch.Tensor) -> float:
    return min(1.0, max(-1.0, float(a @ b)))


def rsa(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """Spearman correlation of the upper triangles of the RDMs (1 - Pearson r between inputs) of X and Y."""
    return pair_value("rsa", X, Y, device)


register_metric(Metric(
    name="rsa",
    function=rsa,
    prepare=lambda X, name, params: rsa_vector(X, name),
    compare=_dot_pair,
    short_name="RSA (Spearman)",
    description="Spearman correlation of representational dissimilarity matrices",
    min_rows=3,
    prepared_bytes=triangle_bytes,
))
