"""Linear, debiased and RBF CKA against the Kornblith et al. Demo, and the matrix routes
(feature space, Gram rows, float32 Gram blocks) against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.similarity import (
    SIMILARITY_METRICS,
    cka,
    debiased_cka,
    gram_blocks,
    linear_cka,
    rbf_cka,
    similarity_matrix,
)
from core.analysis.similarity.centring import centred

CKA_METRICS = ("linear_cka", "debiased_cka", "rbf_cka")


# google-research/representation_similarity Demo.ipynb (Kornblith et al. 2019)
def ref_gram_linear(x: np.ndarray) -> np.ndarray:
    return x.dot(x.T)


def ref_gram_rbf(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    dot_products = x.dot(x.T)
    sq_norms = np.diag(dot_products)
    sq_distances = -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]
    sq_median_distance = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold**2 * sq_median_distance))


def ref_center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def ref_cka(gram_x: np.ndarray, gram_y: np.ndarray, debiased: bool = False) -> float:
    gram_x = ref_center_gram(gram_x, unbiased=debiased)
    gram_y = ref_center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    return scaled_hsic / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y))


def _ref_debiased_dot(xty, sum_sq_rows_x, sum_sq_rows_y, sq_norm_x, sq_norm_y, n):
    return xty - n / (n - 2.0) * sum_sq_rows_x.dot(sum_sq_rows_y) + sq_norm_x * sq_norm_y / ((n - 1) * (n - 2))


def ref_feature_space_linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    x = x - np.mean(x, 0, keepdims=True)
    y = y - np.mean(y, 0, keepdims=True)
    dot_product_similarity = np.linalg.norm(x.T.dot(y)) ** 2
    normalization_x = np.linalg.norm(x.T.dot(x))
    normalization_y = np.linalg.norm(y.T.dot(y))
    if debiased:
        n = x.shape[0]
        ssr_x = np.einsum("ij,ij->i", x, x)
        ssr_y = np.einsum("ij,ij->i", y, y)
        sq_x, sq_y = np.sum(ssr_x), np.sum(ssr_y)
        dot_product_similarity = _ref_debiased_dot(dot_product_similarity, ssr_x, ssr_y, sq_x, sq_y, n)
        normalization_x = np.sqrt(_ref_debiased_dot(normalization_x**2, ssr_x, ssr_x, sq_x, sq_x, n))
        normalization_y = np.sqrt(_ref_debiased_dot(normalization_y**2, ssr_y, ssr_y, sq_y, sq_y, n))
    return dot_product_similarity / (normalization_x * normalization_y)


@pytest.mark.parametrize("metric", CKA_METRICS)
def test_cka__identical_is_one(rng, metric):
    X = rng.standard_normal((50, 7)) + 5.0
    assert SIMILARITY_METRICS[metric][0](X, X) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("metric", ["linear_cka", "debiased_cka"])
def test_linear_cka__invariant_to_orthogonal_maps_and_isotropic_scaling(rng, metric, related, orthogonal):
    fn = SIMILARITY_METRICS[metric][0]
    X = rng.standard_normal((80, 10))
    Y = related(X, 6, 1.0, rng)
    base = fn(X, Y)
    assert 0.2 < base < 0.95
    assert fn(3.7 * X @ orthogonal(10, rng) + 2.0, Y) == pytest.approx(base, abs=1e-10)
    assert fn(X, 0.01 * Y @ orthogonal(6, rng)) == pytest.approx(base, abs=1e-10)
    assert fn(X, X @ orthogonal(10, rng) * 5.0) == pytest.approx(1.0, abs=1e-10)


def test_linear_cka__not_invariant_to_general_invertible_map(rng, orthogonal):
    X = rng.standard_normal((500, 20))
    A = np.diag(np.logspace(0, 2, 20)) @ orthogonal(20, rng)  # invertible, condition number 100
    assert np.linalg.matrix_rank(A) == 20
    assert linear_cka(X, X @ A) < 0.6


def test_debiased_cka__near_zero_for_independent_data_and_closer_than_biased(rng):
    X, Y = rng.standard_normal((1000, 50)), rng.standard_normal((1000, 50))
    biased, debiased = linear_cka(X, Y), debiased_cka(X, Y)
    assert biased > 0.03  # the biased estimator's offset, about d / n
    assert abs(debiased) < 0.01
    assert abs(debiased) < biased


@pytest.mark.parametrize(("n", "d1", "d2"), [(60, 10, 30), (40, 100, 150), (61, 7, 7)])
def test_cka__matches_kornblith_demo_within_1e_6(rng, n, d1, d2, related):
    """Both routes (feature-space for d < n, Gram rows for d > n) against the Demo's formulas."""
    X = rng.standard_normal((n, d1)) + 3.0
    Y = related(X, d2, 0.5, rng)
    assert linear_cka(X, Y) == pytest.approx(ref_feature_space_linear_cka(X, Y), abs=1e-6)
    assert linear_cka(X, Y) == pytest.approx(ref_cka(ref_gram_linear(X), ref_gram_linear(Y)), abs=1e-6)
    expected = ref_cka(ref_gram_linear(X), ref_gram_linear(Y), debiased=True)
    assert debiased_cka(X, Y) == pytest.approx(expected, abs=1e-6)
    assert debiased_cka(X, Y) == pytest.approx(ref_feature_space_linear_cka(X, Y, debiased=True), abs=1e-6)


@pytest.mark.parametrize("bandwidth", [0.5, 1.0])
def test_rbf_cka__matches_kornblith_gram_rbf(rng, bandwidth, related, orthogonal):
    X = rng.standard_normal((41, 6))
    Y = np.tanh(related(X, 9, 0.5, rng))
    expected = ref_cka(ref_gram_rbf(X, bandwidth), ref_gram_rbf(Y, bandwidth))
    assert rbf_cka(X, Y, bandwidth=bandwidth) == pytest.approx(expected, abs=1e-6)
    assert rbf_cka(X, Y, bandwidth=bandwidth) == pytest.approx(rbf_cka(4.0 * X @ orthogonal(6, rng), Y,
                                                                      bandwidth=bandwidth), abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_similarity_matrix__gram_row_and_feature_routes_agree(rng, monkeypatch, debiased, toy_layers):
    monkeypatch.setattr(cka, "BLOCK_BYTES", 8 * 50 * 7)  # a few rows per block
    layers = [centred(torch.from_numpy(X), "X") for X in toy_layers(rng, n=50, widths=(4, 60, 9)).values()]
    others = [centred(torch.from_numpy(X), "Y") for X in toy_layers(rng, n=50, widths=(30, 3)).values()]
    for A, B, symmetric in ((layers, others, False), (layers, layers, True)):
        by_features = cka.cka_by_features(A, B, debiased, symmetric)
        by_grams = cka.cka_by_gram_rows(A, B, debiased, symmetric)
        np.testing.assert_allclose(by_grams, by_features, atol=1e-10)


def test_linear_cka__float32_gram_blocks_agree_with_float64_routes(rng, monkeypatch, toy_layers):
    monkeypatch.setattr(gram_blocks, "GRAM_BLOCK_BYTES", 4 * 53 * 3 * 9)  # 9 rows per block: 6 blocks, a ragged last
    layers = [centred(torch.from_numpy(X), "X") for X in toy_layers(rng, n=53, widths=(4, 60, 9)).values()]
    others = [centred(torch.from_numpy(X), "Y") for X in toy_layers(rng, n=53, widths=(30, 3)).values()]
    for A, B, symmetric in ((layers, others, False), (layers, layers, True)):
        by_float32 = gram_blocks.linear_cka_by_float32_grams(A, B, symmetric)
        np.testing.assert_allclose(by_float32, cka.cka_by_features(A, B, False, symmetric), atol=1e-6)
    np.testing.assert_array_equal(np.diag(by_float32), 1.0)
    np.testing.assert_array_equal(by_float32, by_float32.T)


def test_similarity_matrix__float32_route_on_real_activations_matches_kornblith_within_1e_6(
    session_store, minilm, monkeypatch
):
    import core

    data = core.load_dataset("demo:sentences", limit=300)
    trained = core.extract(minilm, data, layers="all", pooling="mean", store=session_store)
    untrained = core.extract(core.load_model("minilm", reinit=True, seed=0, device="cpu"), data, layers="all",
                             pooling="mean", store=session_store)
    calls = []
    float32_route = gram_blocks.linear_cka_by_float32_grams
    monkeypatch.setattr(gram_blocks, "linear_cka_by_float32_grams", lambda *a: calls.append(1) or float32_route(*a))
    monkeypatch.setattr(cka, "FLOAT32_MIN_WORK", 0)
    result = similarity_matrix(trained, untrained, "linear_cka", device="cpu")
    assert calls, "the float32 Gram route was not taken"
    expected = np.array([[ref_feature_space_linear_cka(trained[a].astype(np.float64), untrained[b].astype(np.float64))
                          for b in untrained.layer_names] for a in trained.layer_names])
    np.testing.assert_allclose(result.matrix, expected, atol=1e-6)
    assert np.ptp(expected) > 0.1  # a real spread of values, not all near 0 or 1
