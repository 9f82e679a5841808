"""Known answers, reference agreement and invariants of core.analysis.similarity
(METRICS.md "Comparing two representations")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from core.activations import Activations
from core.analysis import similarity
from core.analysis.similarity import (
    SIMILARITY_METRICS,
    SimilarityResult,
    best_match_per_layer,
    best_pair,
    debiased_cka,
    diagonal_on_relative_depth,
    linear_cka,
    mutual_knn,
    orthogonal_procrustes_distance,
    rbf_cka,
    rsa,
    similarity_matrix,
    svcca,
)
from core.errors import LayerscopeError
from core.store import Store

CKA_METRICS = ("linear_cka", "debiased_cka", "rbf_cka")


# ----- reference implementations (re-written from the papers' code) -----------------------
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


# js-d/sim_metric (Ding et al. 2021): representations (features, n), centred, unit Frobenius norm
def ref_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    a = (x - x.mean(0)).T
    b = (y - y.mean(0)).T
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(np.sum(a**2) + np.sum(b**2) - 2 * np.linalg.norm(a @ b.T, ord="nuc"))


# ----- helpers -------------------------------------------------------------------------
@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((d, d)))[0]


def _related(X: np.ndarray, d: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """A noisy random linear read-out of X with d features."""
    return X @ rng.standard_normal((X.shape[1], d)) + noise * rng.standard_normal((len(X), d))


def _layers(rng: np.random.Generator, n: int = 60, widths=(8, 12, 16)) -> dict[str, np.ndarray]:
    """A toy 'model': each layer a noisy transform of the previous one."""
    X = rng.standard_normal((n, widths[0]))
    out = {}
    for i, d in enumerate(widths):
        X = np.tanh(_related(X, d, 0.3, rng))
        out[f"layer{i}"] = X
    return out


def _write_run(
    folder: Path, layers: dict[str, np.ndarray], *, fingerprint: str | None = "fp0", model: str = "toy",
    pooling: str = "mean", offsets: np.ndarray | None = None,
) -> Activations:
    """A minimal complete run folder read back as Activations."""
    (folder / "layers").mkdir(parents=True)
    files = {}
    for i, (name, array) in enumerate(layers.items()):
        files[name] = f"layers/{i:03d}.npy"
        np.save(folder / files[name], array.astype(np.float32))
    if offsets is not None:
        np.save(folder / "offsets.npy", offsets)
        np.save(folder / "lengths.npy", np.diff(offsets))
    n_inputs = len(offsets) - 1 if offsets is not None else len(next(iter(layers.values())))
    dataset = {"name": "toy"} if fingerprint is None else {"name": "toy", "fingerprint": fingerprint}
    meta = {
        "layers": list(layers),
        "layer_files": files,
        "pooling": pooling,
        "n_inputs": n_inputs,
        "dims": {name: int(a.shape[1]) for name, a in layers.items()},
        "model": {"name": model, "modality": "text"},
        "dataset": dataset,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return Activations(folder, meta)


# ----- CKA ---------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", CKA_METRICS)
def test_cka__identical_is_one(rng, metric):
    X = rng.standard_normal((50, 7)) + 5.0
    assert SIMILARITY_METRICS[metric][0](X, X) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("metric", ["linear_cka", "debiased_cka"])
def test_linear_cka__invariant_to_orthogonal_maps_and_isotropic_scaling(rng, metric):
    fn = SIMILARITY_METRICS[metric][0]
    X = rng.standard_normal((80, 10))
    Y = _related(X, 6, 1.0, rng)
    base = fn(X, Y)
    assert 0.2 < base < 0.95
    assert fn(3.7 * X @ _orthogonal(10, rng) + 2.0, Y) == pytest.approx(base, abs=1e-10)
    assert fn(X, 0.01 * Y @ _orthogonal(6, rng)) == pytest.approx(base, abs=1e-10)
    assert fn(X, X @ _orthogonal(10, rng) * 5.0) == pytest.approx(1.0, abs=1e-10)


def test_linear_cka__not_invariant_to_general_invertible_map(rng):
    X = rng.standard_normal((500, 20))
    A = np.diag(np.logspace(0, 2, 20)) @ _orthogonal(20, rng)  # invertible, condition number 100
    assert np.linalg.matrix_rank(A) == 20
    assert linear_cka(X, X @ A) < 0.6


def test_debiased_cka__near_zero_for_independent_data_and_closer_than_biased(rng):
    X, Y = rng.standard_normal((1000, 50)), rng.standard_normal((1000, 50))
    biased, debiased = linear_cka(X, Y), debiased_cka(X, Y)
    assert biased > 0.03  # the biased estimator's offset, about d / n
    assert abs(debiased) < 0.01
    assert abs(debiased) < biased


@pytest.mark.parametrize(("n", "d1", "d2"), [(60, 10, 30), (40, 100, 150), (61, 7, 7)])
def test_cka__matches_kornblith_demo_within_1e_6(rng, n, d1, d2):
    """Both routes (feature-space for d < n, Gram rows for d > n) against the Demo's formulas."""
    X = rng.standard_normal((n, d1)) + 3.0
    Y = _related(X, d2, 0.5, rng)
    assert linear_cka(X, Y) == pytest.approx(ref_feature_space_linear_cka(X, Y), abs=1e-6)
    assert linear_cka(X, Y) == pytest.approx(ref_cka(ref_gram_linear(X), ref_gram_linear(Y)), abs=1e-6)
    expected = ref_cka(ref_gram_linear(X), ref_gram_linear(Y), debiased=True)
    assert debiased_cka(X, Y) == pytest.approx(expected, abs=1e-6)
    assert debiased_cka(X, Y) == pytest.approx(ref_feature_space_linear_cka(X, Y, debiased=True), abs=1e-6)


@pytest.mark.parametrize("bandwidth", [0.5, 1.0])
def test_rbf_cka__matches_kornblith_gram_rbf(rng, bandwidth):
    X = rng.standard_normal((41, 6))
    Y = np.tanh(_related(X, 9, 0.5, rng))
    expected = ref_cka(ref_gram_rbf(X, bandwidth), ref_gram_rbf(Y, bandwidth))
    assert rbf_cka(X, Y, bandwidth=bandwidth) == pytest.approx(expected, abs=1e-6)
    assert rbf_cka(X, Y, bandwidth=bandwidth) == pytest.approx(rbf_cka(4.0 * X @ _orthogonal(6, rng), Y,
                                                                      bandwidth=bandwidth), abs=1e-10)


# ----- mutual kNN ---------------------------------------------------------------------------
def test_mutual_knn__one_for_identical_rotated_and_scaled_copies(rng):
    X = rng.standard_normal((200, 16))
    assert mutual_knn(X, X) == 1.0
    assert mutual_knn(X, 3.0 * X @ _orthogonal(16, rng)) == 1.0
    assert mutual_knn(X, X @ _orthogonal(16, rng), clip_quantile=1.0) == 1.0


def test_mutual_knn__independent_data_near_k_over_n(rng):
    n, k = 600, 10
    score = mutual_knn(rng.standard_normal((n, 32)), rng.standard_normal((n, 32)), k=k)
    assert score == pytest.approx(k / (n - 1), abs=0.01)


@pytest.mark.parametrize("clip", [None, 0.95])
@pytest.mark.parametrize("k", [1, 10])
def test_mutual_knn__matches_platonic_rep_reference(rng, clip, k):
    X = rng.standard_t(3, size=(150, 20))  # heavy tails, so clipping changes the answer
    Y = _related(X, 24, 2.0, rng) + rng.standard_t(2, size=(150, 24))
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


# ----- SVCCA, RSA, Procrustes --------------------------------------------------------------
def test_svcca__one_for_invertible_linear_maps(rng):
    X = rng.standard_normal((300, 8))
    A = np.diag(np.logspace(0, 1.5, 8)) @ _orthogonal(8, rng)
    assert svcca(X, X @ A + 4.0, variance=1.0) == pytest.approx(1.0, abs=1e-10)
    assert svcca(X, 2.0 * X @ _orthogonal(8, rng)) == pytest.approx(1.0, abs=1e-10)
    assert svcca(X, rng.standard_normal((300, 8))) < 0.3


def test_svcca__matches_cca_of_svd_reduced_views(rng):
    X = rng.standard_normal((200, 12)) @ np.diag(np.logspace(0, -2, 12))
    Y = _related(X, 15, 0.05, rng)
    result = svcca(X, Y, variance=0.99)
    keep = [similarity._svcca_basis(torch.from_numpy(Z), "Z", 0.99).U.shape[1] for Z in (X, Y)]
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


def test_rsa__identical_is_one_and_matches_scipy_spearman_of_pdist(rng):
    X = rng.standard_normal((40, 9))
    Y = np.tanh(_related(X, 5, 1.0, rng))
    assert rsa(X, X) == pytest.approx(1.0, abs=1e-12)
    assert rsa(X, 7.0 * X + 1.0) == pytest.approx(1.0, abs=1e-12)
    expected = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation"))[0]
    assert rsa(X, Y) == pytest.approx(expected, abs=1e-10)


def test_rsa__ties_get_average_ranks_like_scipy():
    X = np.array([[0, 1, 2], [0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 0, 2]], dtype=float)
    Y = np.array([[1, 5, 2], [3, 1, 0], [0, 1, 4], [2, 2, 1], [0, 3, 1]], dtype=float)
    expected = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation"))[0]
    assert rsa(X, Y) == pytest.approx(expected, abs=1e-10)


def test_orthogonal_procrustes_distance__zero_for_rotations_and_matches_ding_reference(rng):
    X = rng.standard_normal((70, 10))
    assert orthogonal_procrustes_distance(X, 3.0 * X @ _orthogonal(10, rng) - 1.0) == pytest.approx(0.0, abs=1e-10)
    Y = _related(X, 14, 1.0, rng)
    assert orthogonal_procrustes_distance(X, Y) == pytest.approx(ref_procrustes(X, Y), abs=1e-10)
    wide = rng.standard_normal((30, 50))  # d > n: reduced to an n x n factor first
    assert orthogonal_procrustes_distance(wide, Y[:30]) == pytest.approx(ref_procrustes(wide, Y[:30]), abs=1e-10)


# ----- bad input --------------------------------------------------------------------------
@pytest.mark.parametrize("metric", list(SIMILARITY_METRICS))
def test_metrics__constant_layer_raises_naming_it(rng, metric):
    fn = SIMILARITY_METRICS[metric][0]
    constant = np.tile(rng.standard_normal(6), (30, 1))
    with pytest.raises(LayerscopeError, match=r"X is constant|X has 30 .*equal"):
        fn(constant, rng.standard_normal((30, 5)))


def test_metrics__mismatched_rows_and_bad_values_raise_naming_them(rng):
    X = rng.standard_normal((20, 4))
    with pytest.raises(LayerscopeError, match="X has 20 rows but Y has 19"):
        linear_cka(X, X[:19])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(LayerscopeError, match="1 non-finite"):
        linear_cka(bad, X)
    with pytest.raises(LayerscopeError, match="k=0"):
        mutual_knn(X, X, k=0)
    with pytest.raises(LayerscopeError, match="clip_quantile=1.5"):
        mutual_knn(X, X, clip_quantile=1.5)
    with pytest.raises(LayerscopeError, match="bandwidth=-1"):
        rbf_cka(X, X, bandwidth=-1)
    with pytest.raises(LayerscopeError, match="variance=0"):
        svcca(X, X, variance=0)
    with pytest.raises(LayerscopeError, match="at least 4 inputs; got n=3"):
        debiased_cka(X[:3], X[:3])


def test_metrics__registry_returns_python_floats_and_rejects_unknown_names(rng):
    X = rng.standard_normal((30, 5))
    Y = _related(X, 4, 1.0, rng)
    for name, (fn, description) in SIMILARITY_METRICS.items():
        assert type(fn(X, Y)) is float and description
    with pytest.raises(LayerscopeError, match="'cca'.*linear_cka.*rsa"):
        similarity_matrix({"a": X}, {"a": Y}, "cca")
    with pytest.raises(LayerscopeError, match="'topk'.*k, clip_quantile"):
        similarity_matrix({"a": X}, {"a": Y}, "mutual_knn", topk=5)


# ----- similarity_matrix -------------------------------------------------------------------
@pytest.mark.parametrize("metric", list(SIMILARITY_METRICS))
def test_similarity_matrix__cells_equal_the_pair_functions(rng, metric):
    A, B = _layers(rng), _layers(rng, widths=(5, 20))
    params = {"k": 5} if metric == "mutual_knn" else {"variance": 0.9} if metric == "svcca" else {}
    result = similarity_matrix(A, B, metric, **params)
    assert result.matrix.shape == (3, 2) and result.layers_a == tuple(A) and result.layers_b == tuple(B)
    fn = SIMILARITY_METRICS[metric][0]
    expected = [[fn(A[a], B[b], **params) for b in B] for a in A]
    np.testing.assert_allclose(result.matrix, expected, atol=1e-10)
    assert result.reasons == () and result.n == 60 and result.params == {**similarity.METRIC_DEFAULTS[metric], **params}


@pytest.mark.parametrize("metric", CKA_METRICS)
def test_similarity_matrix__run_against_itself_has_unit_cka_diagonal(rng, metric):
    A = _layers(rng, widths=(8, 70, 16))  # one layer wider than n: reduced to n columns
    result = similarity_matrix(A, A, metric)
    np.testing.assert_allclose(np.diag(result.matrix), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.matrix, result.matrix.T, atol=1e-12)
    assert (result.matrix[~np.eye(3, dtype=bool)] < 1.0 - 1e-6).all()


@pytest.mark.parametrize("debiased", [False, True])
def test_similarity_matrix__gram_row_and_feature_routes_agree(rng, monkeypatch, debiased):
    monkeypatch.setattr(similarity, "_BLOCK_BYTES", 8 * 50 * 7)  # a few rows per block
    layers = [similarity._centred(torch.from_numpy(X), "X") for X in _layers(rng, n=50, widths=(4, 60, 9)).values()]
    others = [similarity._centred(torch.from_numpy(X), "Y") for X in _layers(rng, n=50, widths=(30, 3)).values()]
    for A, B, symmetric in ((layers, others, False), (layers, layers, True)):
        by_features = similarity._cka_by_features(A, B, debiased, symmetric)
        by_grams = similarity._cka_by_gram_rows(A, B, debiased, symmetric)
        np.testing.assert_allclose(by_grams, by_features, atol=1e-10)


def test_linear_cka__float32_gram_blocks_agree_with_float64_routes(rng, monkeypatch):
    monkeypatch.setattr(similarity, "_GRAM_BLOCK_BYTES", 4 * 53 * 3 * 9)  # 9 rows per block: 6 blocks, a ragged last
    layers = [similarity._centred(torch.from_numpy(X), "X") for X in _layers(rng, n=53, widths=(4, 60, 9)).values()]
    others = [similarity._centred(torch.from_numpy(X), "Y") for X in _layers(rng, n=53, widths=(30, 3)).values()]
    for A, B, symmetric in ((layers, others, False), (layers, layers, True)):
        by_float32 = similarity._linear_cka_by_float32_grams(A, B, symmetric)
        np.testing.assert_allclose(by_float32, similarity._cka_by_features(A, B, False, symmetric), atol=1e-6)
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
    float32_route = similarity._linear_cka_by_float32_grams
    monkeypatch.setattr(similarity, "_linear_cka_by_float32_grams", lambda *a: calls.append(1) or float32_route(*a))
    monkeypatch.setattr(similarity, "_FLOAT32_MIN_WORK", 0)
    result = similarity_matrix(trained, untrained, "linear_cka", device="cpu")
    assert calls, "the float32 Gram route was not taken"
    expected = np.array([[ref_feature_space_linear_cka(trained[a].astype(np.float64), untrained[b].astype(np.float64))
                          for b in untrained.layer_names] for a in trained.layer_names])
    np.testing.assert_allclose(result.matrix, expected, atol=1e-6)
    assert np.ptp(expected) > 0.1  # a real spread of values, not all near 0 or 1


@pytest.mark.parametrize("metric", ["linear_cka", "rsa", "mutual_knn"])
def test_similarity_matrix__layers_beyond_the_memory_budget_give_the_same_matrix(rng, monkeypatch, metric):
    A, B = _layers(rng, widths=(6, 9, 12, 5)), _layers(rng, widths=(7, 8, 3))
    whole = similarity_matrix(A, B, metric)
    monkeypatch.setattr(similarity, "_PREPARED_BYTES", 2 * similarity._prepared_bytes(metric, {"k": 10}, 60, 12))
    np.testing.assert_allclose(similarity_matrix(A, B, metric).matrix, whole.matrix, atol=1e-12)
    np.testing.assert_allclose(similarity_matrix(A, A, metric).matrix, similarity_matrix(A, dict(A), metric).matrix,
                               atol=1e-12)


@pytest.mark.parametrize("metric", list(SIMILARITY_METRICS))
def test_similarity_matrix__constant_layer_is_nan_with_reason(rng, metric):
    A = _layers(rng)
    A["layer1"] = np.ones((60, 12))
    result = similarity_matrix(A, A, metric, **({"k": 5} if metric == "mutual_knn" else {}))
    nan = np.isnan(result.matrix)
    assert nan[1].all() and nan[:, 1].all()
    assert not nan[np.ix_([0, 2], [0, 2])].any()
    assert "layer layer1 is constant" in result.reason_at(1, 0) and "constant" in result.reason_at(2, 1)
    assert result.reason_at(0, 2) is None


def test_similarity_matrix__too_few_inputs_is_nan_with_reason(rng):
    A = _layers(rng, n=8)
    result = similarity_matrix(A, A, "mutual_knn")
    assert np.isnan(result.matrix).all()
    assert "k=10 must be smaller than the number of inputs n=8" in result.reason_at(0, 0)
    svcca_result = similarity_matrix(A, A, "svcca")  # 8 inputs: the kept directions cannot be disjoint
    assert np.isnan(svcca_result.matrix[0, 1]) and "span only 7" in svcca_result.reason_at(0, 1)
    assert "span only 7" in svcca_result.reason_at(1, 0)


def test_similarity_matrix__subsamples_with_seed_and_records_it(rng):
    A, B = _layers(rng, n=300), _layers(rng, n=300)
    result = similarity_matrix(A, B, "linear_cka", max_points=100, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(300, 100, replace=False))
    assert result.matrix[1, 2] == pytest.approx(linear_cka(A["layer1"][rows], B["layer2"][rows]), abs=1e-12)
    assert (result.n, result.n_inputs, result.seed, result.max_points) == (100, 300, 3, 100)
    assert similarity_matrix(A, B, "linear_cka", max_points=None).n == 300


def test_similarity_matrix__mismatched_runs_raise(tmp_path, rng):
    from core.data import fingerprint_table

    table = pd.DataFrame({"text": ["a", "b", "c"]})
    assert fingerprint_table(table) != fingerprint_table(table.iloc[::-1].reset_index(drop=True))  # order counts
    A = _layers(rng)
    run = _write_run(tmp_path / "a", A, fingerprint="fp0")
    other_rows = _write_run(tmp_path / "b", A, fingerprint="fp1", model="other")
    with pytest.raises(LayerscopeError, match="fp0.*fp1.*same inputs in the same order"):
        similarity_matrix(run, other_rows)
    no_fingerprint = _write_run(tmp_path / "c", A, fingerprint=None)
    with pytest.raises(LayerscopeError, match="has no dataset fingerprint"):
        similarity_matrix(run, no_fingerprint)
    with pytest.raises(LayerscopeError, match="run A has 60 inputs but run B has 59"):
        similarity_matrix(A, {k: v[:59] for k, v in A.items()})
    with pytest.raises(LayerscopeError, match="not one of each"):
        similarity_matrix(run, A)
    with pytest.raises(LayerscopeError, match="layers_b=.*'nope'"):
        similarity_matrix(A, A, layers_b=["nope"])


def test_similarity_matrix__tokens_run_compares_by_token_means(tmp_path, rng):
    lengths = rng.integers(1, 6, size=60)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = {"t0": rng.standard_normal((offsets[-1], 5)), "t1": rng.standard_normal((offsets[-1], 7))}
    tokens_run = _write_run(tmp_path / "tok", tokens, pooling="tokens", offsets=offsets)
    pooled = {name: tokens_run.pooled(name) for name in tokens}
    pooled_run = _write_run(tmp_path / "pool", _layers(rng), model="other")
    result = similarity_matrix(tokens_run, pooled_run, "linear_cka")
    other = {name: np.load(tmp_path / "pool" / f) for name, f in pooled_run.meta["layer_files"].items()}
    expected = similarity_matrix(pooled, other)
    np.testing.assert_allclose(result.matrix, expected.matrix, atol=1e-12)
    assert result.info["model_a"] == "toy" and result.info["model_b"] == "other"


def test_similarity_matrix__cached_in_store(tmp_path, rng, monkeypatch):
    A, B = _layers(rng), _layers(rng)
    run_a, run_b = _write_run(tmp_path / "a", A), _write_run(tmp_path / "b", B, model="other")
    store = Store(tmp_path / "ws")
    first = similarity_matrix(run_a, run_b, "mutual_knn", store=store, k=5)
    monkeypatch.setattr(similarity, "_compute", lambda *a, **k: pytest.fail("recomputed"))
    second = similarity_matrix(run_a, run_b, "mutual_knn", store=store, k=5)
    assert isinstance(second, SimilarityResult)
    np.testing.assert_array_equal(first.matrix, second.matrix)
    assert second.params == {"k": 5, "clip_quantile": None} and second.run_a == run_a.key
    assert second.label == first.label == "mutual k-NN (k=5, no clipping)"
    with pytest.raises(pytest.fail.Exception):
        similarity_matrix(run_a, run_b, "mutual_knn", store=store, k=6)  # another key: computed again
    with pytest.raises(LayerscopeError, match="needs Activations runs"):
        similarity_matrix(A, B, store=store)


def test_similarity_matrix__reports_progress_up_to_every_cell(rng):
    calls = []
    similarity_matrix(_layers(rng), _layers(rng, widths=(4, 5)), "rsa", progress=lambda *c: calls.append(c))
    assert calls[-1][:2] == (6, 6)
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)


# ----- summaries --------------------------------------------------------------------------
def test_best_match_best_pair_and_relative_depth_diagonal():
    matrix = np.array([[0.9, 0.2, np.nan], [0.1, 0.8, 0.3], [np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(best_match_per_layer(matrix), [0, 1, -1])
    np.testing.assert_array_equal(best_match_per_layer(matrix, higher_is_better=False), [1, 0, -1])
    assert best_pair(matrix) == (0, 0, 0.9)
    assert best_pair(np.full((2, 2), np.nan)) is None
    assert diagonal_on_relative_depth(np.array([[1.0, 0.0], [0.0, 0.5]])) == pytest.approx(0.75)
    # A has 3 layers, B 5: depth t reads (2t, 4t); values linear in the B index make the answer exact
    wide = np.tile(np.arange(5.0), (3, 1))
    assert diagonal_on_relative_depth(wide) == pytest.approx(np.mean(4 * np.linspace(0, 1, 5)))
    assert diagonal_on_relative_depth(wide.T) == pytest.approx(np.mean(4 * np.linspace(0, 1, 5)))
    assert math.isnan(diagonal_on_relative_depth(np.full((2, 3), np.nan)))


def test_similarity_result__distance_metrics_match_by_minimum(rng):
    A = _layers(rng)
    result = similarity_matrix(A, A, "orthogonal_procrustes_distance")
    assert not result.higher_is_better
    assert result.best_match() == tuple(A)  # each layer is closest to itself (distance 0)
    assert result.best_pair()[2] == pytest.approx(0.0, abs=1e-10)
    assert len(result.to_frame()) == 9


# ----- a real model ---------------------------------------------------------------------------
def test_similarity_matrix__minilm_matches_itself_and_not_its_reinitialised_twin(session_store, minilm):
    import core

    data = core.load_dataset("demo:sentences", limit=80)
    trained = core.extract(minilm, data, layers="all", pooling="mean", store=session_store)
    untrained = core.extract(core.load_model("minilm", reinit=True, seed=0, device="cpu"), data, layers="all",
                             pooling="mean", store=session_store)
    itself = similarity_matrix(trained, trained, "linear_cka", store=session_store)
    np.testing.assert_allclose(np.diag(itself.matrix), 1.0, atol=1e-12)
    assert itself.best_match() == tuple(trained.layer_names)
    versus = similarity_matrix(trained, untrained, "linear_cka", store=session_store)
    assert versus.matrix.shape == (len(trained.layer_names), len(untrained.layer_names))
    assert np.isfinite(versus.matrix).all()
    assert versus.matrix[-1, -1] < 0.9
    assert versus.diagonal_on_relative_depth() < itself.diagonal_on_relative_depth() == pytest.approx(1.0)
    knn = similarity_matrix(trained, untrained, "mutual_knn", store=session_store)
    assert knn.matrix[-1, -1] < 0.9
