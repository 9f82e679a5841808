"""Mutual k-NN against the platonic-rep reference (Huh et al. 2024)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.analysis.similarity import mutual_knn
from core.errors import LayerscopeError


# minyoungg/platonic-rep metrics.py (Huh et al. 2024), in float64
def ref_remove_outliers(feats: torch.Tensor, q: float) -> torch.Tensor:
    if q == 1:
        return feats
    q_val = torch.quantile(feats.abs().flatten(start_dim=1), q, dim=1).mean()
    return feats.clamp(-q_val, q_val)


def ref_compute_nearest_neighbors(feats: torch.Tensor, topk: int) -> torch.Tensor:
    sims = feats @ feats.T
    sims.fill_diagonal_(-math.inf)
    return sims.topk(topk, dim=1).indices


def ref_mutual_knn(feats_a: torch.Tensor, feats_b: torch.Tensor, topk: int) -> float:
    knn_a = ref_compute_nearest_neighbors(feats_a, topk)
    knn_b = ref_compute_nearest_neighbors(feats_b, topk)
    n = knn_a.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    mask_a = torch.zeros(n, n, dtype=torch.float64)
    mask_b = torch.zeros(n, n, dtype=torch.float64)
    mask_a[rows, knn_a] = 1.0
    mask_b[rows, knn_b] = 1.0
    return ((mask_a * mask_b).sum(dim=1) / topk).mean().item()


def ref_platonic_score(x: np.ndarray, y: np.ndarray, topk: int, q: float | None) -> float:
    a, b = torch.from_numpy(x), torch.from_numpy(y)
    if q is not None:
        a, b = ref_remove_outliers(a, q), ref_remove_outliers(b, q)
    return ref_mutual_knn(F.normalize(a, p=2, dim=-1), F.normalize(b, p=2, dim=-1), topk)


def test_mutual_knn__one_for_identical_rotated_and_scaled_copies(rng, orthogonal):
    X = rng.standard_normal((200, 16))
    assert mutual_knn(X, X) == 1.0
    assert mutual_knn(X, 3.0 * X @ orthogonal(16, rng)) == 1.0
    assert mutual_knn(X, X @ orthogonal(16, rng), clip_quantile=1.0) == 1.0


def test_mutual_knn__independent_data_near_k_over_n(rng):
    n, k = 600, 10
    score = mutual_knn(rng.standard_normal((n, 32)), rng.standard_normal((n, 32)), k=k)
    assert score == pytest.approx(k / (n - 1), abs=0.01)


@pytest.mark.parametrize("clip", [None, 0.95])
@pytest.mark.parametrize("k", [1, 10])
def test_mutual_knn__matches_platonic_rep_reference(rng, clip, k, related):
    X = rng.standard_t(3, size=(150, 20))  # heavy tails, so clipping changes the answer
    Y = related(X, 24, 2.0, rng) + rng.standard_t(2, size=(150, 24))
    expected = ref_platonic_score(X, Y, k, clip)
    assert mutual_knn(X, Y, k=k, clip_quantile=clip) == pytest.approx(expected, abs=1e-6)


def test_mutual_knn__clipping_tames_a_massive_activation(rng):
    Y = rng.standard_normal((150, 20))
    X = Y.copy()
    X[:, 0] += 100.0 * rng.standard_normal(150)  # one outlier feature dominates the directions
    assert mutual_knn(X, Y, clip_quantile=0.95) > mutual_knn(X, Y) + 0.1


def test_mutual_knn__k_not_below_n_raises_naming_values(rng):
    X = rng.standard_normal((8, 3))
    with pytest.raises(LayerscopeError, match=r"k=10 .*n=8"):
        mutual_knn(X, X, k=10)
    with pytest.raises(LayerscopeError, match=r"k=8 .*n=8"):
        mutual_knn(X, X, k=8)
    assert mutual_knn(X, X, k=7) == 1.0


def test_mutual_knn__zero_rows_have_no_direction(rng):
    X = rng.standard_normal((30, 4))
    X[3] = 0.0
    with pytest.raises(LayerscopeError, match="1 all-zero rows"):
        mutual_knn(X, rng.standard_normal((30, 4)))
