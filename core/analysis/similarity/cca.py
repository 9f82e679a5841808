"""SVCCA (Raghu et al. 2017, google/svcca).

Keep the top singular directions that explain ``variance`` of each centred side, then
take the mean canonical correlation between the two kept subspaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.analysis.similarity.centring import centre, constant_error
from core.analysis.similarity.registry import Metric, pair_value, register_metric
from core.errors import LayerscopeError
from core.validation import check_number


@dataclass(frozen=True)
class Basis:
    """The kept singular directions of one centred layer."""

    U: torch.Tensor  # (n, k) orthonormal basis of the kept singular directions (sample space)
    n_rank: int  # numerical rank of the centred data


def svcca_basis(X: torch.Tensor, name: str, variance: float) -> Basis:
    """The fewest top singular directions of centred X (n, d) that explain `variance` of it."""
    n, d = X.shape
    Xc = centre(X)
    U, s, _ = torch.linalg.svd(Xc, full_matrices=False)
    if not bool((s > 0).any()):
        raise constant_error(name, n, "it has no singular directions for SVCCA")
    s = torch.where(s > max(n, d) * torch.finfo(torch.float64).eps * s[0], s, 0.0)  # round-off -> 0
    energy = s**2
    share = torch.cumsum(energy, 0) / energy.sum()
    kept = int(torch.searchsorted(share, torch.tensor(variance - 1e-12, dtype=share.dtype, device=share.device))) + 1
    rank = int((s > 0).sum())
    return Basis(U[:, : min(kept, rank)], rank)


def _svcca_pair(a: Basis, b: Basis) -> float:
    n = a.U.shape[0]
    ka, kb = a.U.shape[1], b.U.shape[1]
    if ka + kb > n - 1:  # both fit in the (n - 1)-dim centred space only if they overlap
        raise LayerscopeError(
            f"SVCCA keeps {ka} + {kb} directions but {n} centred inputs span only {n - 1} dimensions, so at least "
            f"{ka + kb - n + 1} canonical correlations are 1 by construction; use more inputs or a lower variance"
        )
    rho = torch.linalg.svdvals(a.U.T @ b.U).clamp(0.0, 1.0)  # cosines of principal angles = canonical correlations
    return float(rho.mean())


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    # the share of variance kept; google/svcca keeps 0.99
    return {"variance": check_number("variance", params["variance"], low=0, low_open=True, high=1)}


def svcca(X: Any, Y: Any, *, variance: float = 0.99, device: str | torch.device | None = None) -> float:
    """Mean canonical correlation between the top singular directions explaining `variance` of X and of Y."""
    return pair_value("svcca", X, Y, device, variance=variance)


register_metric(Metric(
    name="svcca",
    function=svcca,
    prepare=lambda X, name, params: svcca_basis(X, name, params["variance"]),
    compare=_svcca_pair,
    short_name="SVCCA",
    description="mean canonical correlation of the top singular directions (Raghu et al. 2017)",
    defaults={"variance": 0.99},
    check_params=_check_params,
    min_rows=3,
    variant=lambda params: f"{100 * params['variance']:g}% variance",
))
