"""Matrix entropy, effective rank and anisotropy from the centred Gram spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.analysis.geometry import anisotropy, effective_rank, matrix_entropy
from core.errors import LayerscopeError


def _reference_entropy(X: np.ndarray, alpha: float) -> float:
    """METRICS.md formula written out with an explicit n x n Gram matrix."""
    Z = X - X.mean(axis=0)
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    K = Z @ Z.T
    lam = np.clip(np.linalg.eigvalsh(K / np.trace(K)), 0, None)
    lam = lam[lam > 1e-12]
    H = -np.sum(lam * np.log(lam)) if alpha == 1 else np.log(np.sum(lam**alpha)) / (1 - alpha)
    return H / math.log(min(X.shape))


@pytest.mark.parametrize("shape", [(30, 80), (200, 12)], ids=["n<d", "n>d"])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_matrix_entropy__matches_reference_formula_on_either_gram_side(rng, shape, alpha):
    X = rng.standard_normal(shape) * rng.uniform(0.1, 3, size=shape[1])
    assert matrix_entropy(X, alpha=alpha) == pytest.approx(_reference_entropy(X, alpha), rel=1e-9)


def test_matrix_entropy__isotropic_near_one_and_rank_one_zero(rng):
    assert matrix_entropy(rng.standard_normal((4000, 32))) > 0.98
    rank_one = 3.0 + rng.standard_normal((300, 1)) * rng.standard_normal((1, 50))
    for alpha in (0.5, 1.0, 2.0):
        assert matrix_entropy(rank_one, alpha=alpha) == pytest.approx(0.0, abs=1e-9)


def test_matrix_entropy__continuous_at_alpha_one(rng):
    X = rng.standard_normal((100, 20)) * np.arange(1, 21)
    at_one = matrix_entropy(X, alpha=1.0)
    for alpha in (1 - 1e-4, 1 + 1e-4):
        assert matrix_entropy(X, alpha=alpha) == pytest.approx(at_one, abs=1e-4)
    assert matrix_entropy(X, alpha=1 + 1e-12) == pytest.approx(at_one, abs=1e-9)
    assert matrix_entropy(X, alpha=2.0) < at_one < matrix_entropy(X, alpha=0.5)  # Rényi decreases in alpha


def test_matrix_entropy__constant_activations_and_bad_alpha_raise(rng):
    with pytest.raises(LayerscopeError, match="all 10 rows of X are identical"):
        matrix_entropy(np.full((10, 5), 0.1))
    with pytest.raises(LayerscopeError, match="alpha=0.0"):
        matrix_entropy(rng.standard_normal((10, 5)), alpha=0.0)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_effective_rank__k_orthogonal_equal_variance_directions_is_k(rng, k, orthogonal_equal_variance):
    assert effective_rank(orthogonal_equal_variance(k, 500, 64, rng)) == pytest.approx(k, rel=1e-9)


def test_effective_rank__constant_raises():
    with pytest.raises(LayerscopeError, match="all 20 rows of X are identical"):
        effective_rank(np.full((20, 4), 3.0))


def test_anisotropy__isotropic_near_zero_and_common_offset_near_one(rng):
    X = rng.standard_normal((2000, 64))
    X -= X.mean(axis=0)
    iso = anisotropy(X)
    assert abs(iso["mean_cosine"]) < 0.02
    assert iso["top_eigenvalue_share"] < 2.0 / 64
    offset = rng.standard_normal(64)
    shifted = anisotropy(X + 40.0 * offset / np.linalg.norm(offset))  # offset norm 40, noise norm ~8
    assert shifted["mean_cosine"] > 0.9
    assert shifted["top_eigenvalue_share"] == pytest.approx(iso["top_eigenvalue_share"])  # covariance ignores offset
    assert isinstance(iso["mean_cosine"], float)


def test_anisotropy__seeded_and_exact_for_few_rows(rng):
    X = rng.standard_normal((500, 16)) + 1.0
    assert anisotropy(X, seed=3) == anisotropy(X, seed=3)
    few = X[:30]
    unit = few / np.linalg.norm(few, axis=1, keepdims=True)
    cos = unit @ unit.T
    exact = cos[np.triu_indices(30, k=1)].mean()
    assert anisotropy(few)["mean_cosine"] == pytest.approx(exact, rel=1e-12)  # 435 pairs <= n_pairs: all used


def test_anisotropy__constant_and_bad_n_pairs_raise(rng):
    with pytest.raises(LayerscopeError, match="covariance is zero"):
        anisotropy(np.ones((10, 3)))
    with pytest.raises(LayerscopeError, match="n_pairs=0"):
        anisotropy(rng.standard_normal((10, 3)), n_pairs=0)
