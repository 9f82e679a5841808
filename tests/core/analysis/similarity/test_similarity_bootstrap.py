"""Bootstrap intervals of similarity over inputs: coverage of a known CKA, duplicates, bad requests, the store."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.similarity.bootstrap import bootstrap_similarity
from core.analysis.similarity.calibration import BootstrapResult
from core.errors import LayerscopeError
from core.store import Store


def population_linear_cka(A: np.ndarray, noise_var: float) -> float:
    """Linear CKA of X ~ N(0, I_d) and Y = X A + E, E ~ N(0, noise_var I_p), in the population.

    Sample CKA is |Sxy|_F^2 / (|Sxx|_F |Syy|_F) for the sample covariances (the 1/n^2 cancel), so
    its limit has Sxx = I, Sxy = A, Syy = A'A + noise_var I.
    """
    Syy = A.T @ A + noise_var * np.eye(A.shape[1])
    return float(np.linalg.norm(A) ** 2 / (np.sqrt(A.shape[0]) * np.linalg.norm(Syy)))


@pytest.mark.slow  # 50 x 200 resamples: 9 to 55 s on two shared cores
def test_bootstrap__95_percent_intervals_cover_a_known_linear_cka(rng):
    d, p, n, noise_var, repeats = 3, 3, 150, 1.0, 50
    A = rng.standard_normal((d, p))
    truth = population_linear_cka(A, noise_var)
    covered = 0
    for r in range(repeats):
        X = rng.standard_normal((n, d))
        Y = X @ A + np.sqrt(noise_var) * rng.standard_normal((n, p))
        result = bootstrap_similarity({"x": X}, {"y": Y}, "linear_cka", n_boot=200, seed=r)
        covered += result.low[0, 0] <= truth <= result.high[0, 0]
    assert covered / repeats >= 0.9


def test_bootstrap__interval_holds_the_observed_value_and_is_seeded(rng, toy_layers):
    A, B = toy_layers(rng, n=50, widths=(6, 8)), toy_layers(rng, n=50, widths=(5,))
    first = bootstrap_similarity(A, B, "linear_cka", n_boot=40, seed=4)
    again = bootstrap_similarity(A, B, "linear_cka", n_boot=40, seed=4)
    other = bootstrap_similarity(A, B, "linear_cka", n_boot=40, seed=5)
    np.testing.assert_array_equal(first.draws, again.draws)
    assert not np.array_equal(first.draws, other.draws)
    assert first.draws.shape == (40, 2, 1) and first.duplicates == "kept"
    assert (first.low <= first.observed).all() and (first.observed <= first.high).all()
    narrow = bootstrap_similarity(A, B, "linear_cka", n_boot=40, seed=4, level=0.5)
    assert (narrow.high - narrow.low < first.high - first.low).all()
    assert first.cell("layer0", "layer0")["low"] == pytest.approx(first.low[0, 0])


def test_bootstrap__knn_drops_duplicate_draws_so_unrelated_data_stay_near_chance(rng):
    # a kept duplicate would be its copy's nearest neighbour in both runs: ~63% of rows would
    # share a neighbour for free and the draws would average about 0.17 instead of ~k / 62
    X, Y = rng.standard_normal((100, 5)), rng.standard_normal((100, 5))
    result = bootstrap_similarity({"x": X}, {"y": Y}, "mutual_knn", n_boot=30, k=5)
    assert result.duplicates == "dropped"
    assert float(np.nanmean(result.draws)) < 0.12


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_boot": 1}, "n_boot=1 must be an integer >= 2"),
    ({"level": 1.0}, "level=1.0 must be a finite number > 0 and < 1"),
    ({"level": 0}, "level=0 must be a finite number > 0 and < 1"),
    ({"metric": "debiased_cka", "n": 3}, "debiased_cka needs at least 4 inputs; got n=3"),
])
def test_bootstrap__refuses_bad_requests(kwargs, message, rng):
    kwargs = dict(kwargs)
    n = kwargs.pop("n", 20)
    with pytest.raises(LayerscopeError, match=message):
        bootstrap_similarity({"x": rng.standard_normal((n, 3))}, {"y": rng.standard_normal((n, 3))},
                             kwargs.pop("metric", "linear_cka"), **kwargs)


def test_bootstrap__cached_in_store_with_every_parameter(tmp_path, rng, monkeypatch, toy_layers, write_run):
    from core.analysis.similarity import bootstrap

    run_a = write_run(tmp_path / "a", toy_layers(rng))
    run_b = write_run(tmp_path / "b", toy_layers(rng), model="other")
    store = Store(tmp_path / "ws")
    first = bootstrap_similarity(run_a, run_b, layers_a=["layer1"], layers_b=["layer2"], n_boot=10, store=store)
    monkeypatch.setattr(bootstrap, "similarity_matrix", _only_observed(bootstrap.similarity_matrix))
    again = bootstrap_similarity(run_a, run_b, layers_a=["layer1"], layers_b=["layer2"], n_boot=10,
                                 store=Store(store.root))
    assert isinstance(again, BootstrapResult) and again.layers_a == ("layer1",)
    np.testing.assert_array_equal(again.draws, first.draws)
    with pytest.raises(pytest.fail.Exception):
        bootstrap_similarity(run_a, run_b, layers_a=["layer1"], layers_b=["layer2"], n_boot=10, level=0.9,
                             store=store)


def _only_observed(similarity_matrix):
    """similarity_matrix that fails when asked for a resample (arrays), not for the stored observed matrix."""
    def call(acts_a, acts_b, *args, **kwargs):
        if isinstance(acts_a, dict):
            pytest.fail("recomputed")
        return similarity_matrix(acts_a, acts_b, *args, **kwargs)
    return call
