"""Orthogonal Procrustes distance (Ding et al. 2021, js-d/sim_metric).

Centre, scale to unit Frobenius norm, then 2 - 2 |Xc^T Yc|_* in [0, 2]. A distance:
0 means identical up to a rotation.
"""

from __future__ import annotations

from typing import Any

import torch

from core.analysis.similarity.centring import Centred, centred
from core.analysis.similarity.registry import Metric, pair_value, register_metric


def procrustes_features(X: torch.Tensor, name: str) -> Centred:
    """Centred X (n, d) reduced to min(n, d) columns and scaled to unit Frobenius norm."""
    c = centred(X, name, "the Procrustes distance has no scale to normalise")
    scale = torch.sqrt(c.ssr.sum())
    return Centred(c.P / scale, c.ssr / scale**2)


def _procrustes_pair(a: Centred, b: Centred) -> float:
    nuclear = float(torch.linalg.svdvals(a.P.T @ b.P).sum())
    return min(2.0, max(0.0, 2.0 - 2.0 * nuclear))


def orthogonal_procrustes_distance(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """min over rotations R of |X' - Y' R|_F^2 for centred, unit-Frobenius X', Y' (zero-padded); in [0, 2]."""
    return pair_value("orthogonal_procrustes_distance", X, Y, device)


register_metric(Metric(
    name="orthogonal_procrustes_distance",
    function=orthogonal_procrustes_distance,
    prepare=lambda X, name, params: procrustes_features(X, name),
    compare=_procrustes_pair,
    short_name="Procrustes distance",
    description="distance after the best rotation, 0 (same up to rotation) to 2 (Ding et al. 2021)",
    is_distance=True,
))
