"""Orthogonal Procrustes distance against the js-d/sim_metric reference (Ding et al. 2021)."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.similarity import orthogonal_procrustes_distance


# js-d/sim_metric (Ding et al. 2021): representations (features, n), centred, unit Frobenius norm
def ref_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    a = (x - x.mean(0)).T
    b = (y - y.mean(0)).T
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(np.sum(a**2) + np.sum(b**2) - 2 * np.linalg.norm(a @ b.T, ord="nuc"))


def test_orthogonal_procrustes_distance__zero_for_rotations_and_matches_ding_reference(rng, related, orthogonal):
    X = rng.standard_normal((70, 10))
    assert orthogonal_procrustes_distance(X, 3.0 * X @ orthogonal(10, rng) - 1.0) == pytest.approx(0.0, abs=1e-10)
    Y = related(X, 14, 1.0, rng)
    assert orthogonal_procrustes_distance(X, Y) == pytest.approx(ref_procrustes(X, Y), abs=1e-10)
    wide = rng.standard_normal((30, 50))  # d > n: reduced to an n x n factor first
    assert orthogonal_procrustes_distance(wide, Y[:30]) == pytest.approx(ref_procrustes(wide, Y[:30]), abs=1e-10)
