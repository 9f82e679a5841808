"""SVCCA against CCA of the SVD-reduced views (google/svcca, Raghu et al. 2017)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.similarity import svcca
from core.analysis.similarity.cca import svcca_basis
from core.errors import LayerscopeError


# google/svcca (Raghu et al. 2017): SVD-reduce each side, then CCA of the reduced views
def ref_svcca(x: np.ndarray, y: np.ndarray, keep_x: int, keep_y: int) -> float:
    def reduce(a: np.ndarray, keep: int) -> np.ndarray:
        acts = (a - a.mean(0)).T  # (neurons, datapoints) as in google/svcca
        _, s, v = np.linalg.svd(acts, full_matrices=False)
        return (s[:keep, None] * v[:keep]).T  # (datapoints, keep)

    rx, ry = reduce(x, keep_x), reduce(y, keep_y)
    sxx, syy, sxy = rx.T @ rx, ry.T @ ry, rx.T @ ry

    def inv_sqrt(m: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(m)
        return (v / np.sqrt(w)) @ v.T

    rho = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy), compute_uv=False)
    return float(np.mean(np.clip(rho, 0, 1)))


def test_svcca__one_for_invertible_linear_maps(rng, orthogonal):
    X = rng.standard_normal((300, 8))
    A = np.diag(np.logspace(0, 1.5, 8)) @ orthogonal(8, rng)
    assert svcca(X, X @ A + 4.0, variance=1.0) == pytest.approx(1.0, abs=1e-10)
    assert svcca(X, 2.0 * X @ orthogonal(8, rng)) == pytest.approx(1.0, abs=1e-10)
    assert svcca(X, rng.standard_normal((300, 8))) < 0.3


def test_svcca__matches_cca_of_svd_reduced_views(rng, related):
    X = rng.standard_normal((200, 12)) @ np.diag(np.logspace(0, -2, 12))
    Y = related(X, 15, 0.05, rng)
    result = svcca(X, Y, variance=0.99)
    keep = [svcca_basis(torch.from_numpy(Z), "Z", 0.99).U.shape[1] for Z in (X, Y)]
    assert 1 < keep[0] < 12
    for Z, k in zip((X, Y), keep):  # kept = fewest directions reaching 99% of the variance
        s = np.linalg.svd(Z - Z.mean(0), compute_uv=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        assert share[k - 1] >= 0.99 > share[k - 2]
    assert result == pytest.approx(ref_svcca(X, Y, *keep), abs=1e-6)


def test_svcca__trivially_perfect_case_raises(rng):
    X, Y = rng.standard_normal((20, 30)), rng.standard_normal((20, 30))
    with pytest.raises(LayerscopeError, match="span only 19 dimensions"):
        svcca(X, Y)
