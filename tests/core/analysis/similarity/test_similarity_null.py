"""Permutation nulls of similarity matrices: shortcuts equal recomputation, the null centres where theory says."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.similarity import metric_choices, similarity_matrix
from core.analysis.similarity.calibration import NullResult
from core.analysis.similarity.null import PERMUTATION_STREAM, permutation_null
from core.errors import LayerscopeError
from core.store import Store

PARAMS = {"mutual_knn": {"k": 5}}


def _centred_gram(X: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(axis=0)
    return Xc @ Xc.T


def expected_null_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """E over uniform row permutations P of linear CKA(X, PY), exactly.

    With centred Grams K, L (row sums 0) and pi uniform: E[L_{pi(i) pi(i)}] = tr L / n and, for
    i != j, E[L_{pi(i) pi(j)}] = (1'L1 - tr L) / (n (n - 1)) = -tr L / (n (n - 1)). So
    E <K, P L P'> = tr K tr L / n + (1'K1 - tr K)(-tr L) / (n (n - 1)) = tr K tr L / (n - 1),
    and the CKA denominator |K| |L| does not change under P: E CKA = tr K tr L / ((n - 1) |K| |L|)
    = sqrt(beta_K beta_L) / (n - 1) with beta = (tr K)^2 / tr K^2: the permutation mean of the
    RV coefficient (Josse, Pages & Husson 2008, "Testing the significance of the RV coefficient",
    Comput. Stat. Data Anal. 53:82-91, eq. 4; Kazi-Aoual et al. 1995).
    """
    K, L = _centred_gram(X), _centred_gram(Y)
    n = len(X)
    return float(np.trace(K) * np.trace(L) / ((n - 1) * np.linalg.norm(K) * np.linalg.norm(L)))


@pytest.mark.parametrize("metric", [m.name for m in metric_choices()])
def test_permutation_null__draws_equal_the_matrix_of_b_with_rows_permuted(metric, rng, toy_layers):
    A, B = toy_layers(rng, n=40, widths=(6, 8)), toy_layers(rng, n=40, widths=(5, 7, 9))
    result = permutation_null(A, B, metric, n_permutations=4, seed=3, **PARAMS.get(metric, {}))
    perms = np.random.default_rng([3, PERMUTATION_STREAM])
    for t in range(4):
        order = perms.permutation(40)
        again = similarity_matrix(A, {k: X[order] for k, X in B.items()}, metric, **PARAMS.get(metric, {}))
        np.testing.assert_allclose(result.null[t], again.matrix, atol=1e-5)
    np.testing.assert_array_equal(result.observed, similarity_matrix(A, B, metric, **PARAMS.get(metric, {})).matrix)


def test_permutation_null__moving_the_side_with_fewer_layers_changes_nothing(rng, toy_layers):
    A, B = toy_layers(rng, n=40, widths=(6, 8, 5)), toy_layers(rng, n=40, widths=(7,))
    forward = permutation_null(A, B, "linear_cka", n_permutations=6, seed=1)  # B has fewer layers: B moves
    perms = np.random.default_rng([1, PERMUTATION_STREAM])
    order = [perms.permutation(40) for _ in range(6)][5]
    again = similarity_matrix(A, {k: X[order] for k, X in B.items()}, "linear_cka")
    np.testing.assert_allclose(forward.null[5], again.matrix, atol=1e-6)


def test_permutation_null__linear_cka_centres_on_its_analytic_expectation(rng):
    n, draws = 30, 2000
    X, Y = rng.standard_normal((n, 5)), rng.standard_normal((n, 4))  # independent
    result = permutation_null({"x": X}, {"y": Y}, "linear_cka", n_permutations=draws, seed=0)
    expected = expected_null_linear_cka(X, Y)
    mean, std = float(result.null_mean[0, 0]), float(result.null_std[0, 0])
    assert abs(mean - expected) < 4 * std / np.sqrt(draws), (mean, expected, std)
    assert expected > 0.1  # far from 0: small n, so the test could tell a biased null apart


def test_permutation_null__debiased_cka_centres_on_zero(rng):
    # U-centred Grams have zero diagonals and zero row sums, so E <K, P L P'> = 0 exactly
    n, draws = 30, 2000
    X, Y = rng.standard_normal((n, 5)), rng.standard_normal((n, 4))
    result = permutation_null({"x": X}, {"y": Y}, "debiased_cka", n_permutations=draws, seed=0)
    assert abs(float(result.null_mean[0, 0])) < 4 * float(result.null_std[0, 0]) / np.sqrt(draws)


@pytest.mark.parametrize("metric", ["linear_cka", "mutual_knn", "orthogonal_procrustes_distance"])
def test_permutation_null__related_layers_get_the_smallest_p_value(metric, rng):
    X = rng.standard_normal((60, 6))
    Y = X @ rng.standard_normal((6, 8)) + 0.1 * rng.standard_normal((60, 8))
    result = permutation_null({"x": X}, {"y": Y}, metric, n_permutations=99, **PARAMS.get(metric, {}))
    assert result.p_value[0, 0] == pytest.approx(1 / 100)
    assert result.above_null().all()


def test_permutation_null__independent_layers_give_uniform_p_values(rng):
    X = {"x": rng.standard_normal((50, 4))}
    Y = {f"y{i}": rng.standard_normal((50, 4)) for i in range(60)}
    p = permutation_null(X, Y, "linear_cka", n_permutations=49, seed=2).p_value.ravel()
    assert 0.35 < p.mean() < 0.65
    assert np.mean(p < 0.05) < 0.15
    assert np.mean(p > 0.5) > 0.3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_permutations": 0}, "n_permutations=0 must be an integer >= 1"),
    ({"n_permutations": 2.5}, "n_permutations=2.5 must be an integer"),
    ({"n_permutations": 200, "n": 5}, r"n_permutations=200 must be at most n! = 120"),
    ({"metric": "debiased_cka", "n": 3}, "debiased_cka needs at least 4 inputs; got n=3"),
    ({"metric": "mutual_knn", "k": 12, "n": 12}, "k=12 must be smaller than the number of inputs n=12"),
])
def test_permutation_null__refuses_bad_requests(kwargs, message, rng):
    kwargs = dict(kwargs)
    n = kwargs.pop("n", 20)
    data = {"x": rng.standard_normal((n, 3))}
    with pytest.raises(LayerscopeError, match=message):
        permutation_null(data, {"y": rng.standard_normal((n, 3))}, kwargs.pop("metric", "linear_cka"), **kwargs)


def test_permutation_null__cached_in_store_with_every_parameter(tmp_path, rng, monkeypatch, toy_layers, write_run):
    from core.analysis.similarity import null

    run_a = write_run(tmp_path / "a", toy_layers(rng))
    run_b = write_run(tmp_path / "b", toy_layers(rng), model="other")
    store = Store(tmp_path / "ws")
    first = permutation_null(run_a, run_b, "linear_cka", n_permutations=5, store=store)
    monkeypatch.setattr(null, "null_draws", lambda *a, **k: pytest.fail("recomputed"))
    again = permutation_null(run_a, run_b, "linear_cka", n_permutations=5, store=Store(store.root))
    assert isinstance(again, NullResult) and again.run_a == run_a.key and again.n_permutations == 5
    np.testing.assert_array_equal(again.p_value, first.p_value)
    np.testing.assert_array_equal(again.null, first.null)
    with pytest.raises(pytest.fail.Exception):
        permutation_null(run_a, run_b, "linear_cka", n_permutations=6, store=store)
    with pytest.raises(pytest.fail.Exception):
        permutation_null(run_a, run_b, "linear_cka", n_permutations=5, seed=1, store=store)
