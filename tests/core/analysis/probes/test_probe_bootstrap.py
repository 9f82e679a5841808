"""Bootstrap intervals of probe scores over inputs, and the paired test of best layer vs last layer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.analysis.probes import (
    ProbeResult,
    probe_accuracy_by_layer,
    probe_by_layer_cached,
    probe_interval,
    probe_r2_by_layer,
)
from core.analysis.probes.result import make_result
from core.errors import LayerscopeError
from core.figures.probes import probe_curve
from core.store import Store


def _classification(correct: np.ndarray) -> ProbeResult:
    """A ProbeResult whose layers predict class 1 where `correct` (n_layers, n) is 1, every label being 1."""
    L, n = correct.shape
    scores = np.repeat(correct.mean(1, keepdims=True), 5, axis=1)  # (L, 5): the fold means as if equal
    return make_result([f"l{i}" for i in range(L)], scores, np.full((L, 5), np.nan), chance=0.5,
                       metric="accuracy", n=n, n_dropped=0, params={}, details={},
                       held_out=np.where(correct > 0, 1, 0), held_out_target=np.ones(n, dtype=np.int64))


def _regression(predictions: np.ndarray, y: np.ndarray) -> ProbeResult:
    L = len(predictions)
    return make_result([f"l{i}" for i in range(L)], np.zeros((L, 5)), np.full((L, 5), np.nan), chance=0.0,
                       metric="r2", n=len(y), n_dropped=0, params={}, details={}, held_out=predictions,
                       held_out_target=y)


def test_probe_interval__covers_the_accuracy_of_bernoulli_correctness_in_90_percent_of_draws():
    p, n, draws = 0.7, 200, 200
    rng = np.random.default_rng(0)
    covered = 0
    for draw in range(draws):
        result = _classification((rng.random((1, n)) < p).astype(float))
        interval = probe_interval(result, n_boot=300, seed=draw)
        covered += interval.low[0] <= p <= interval.high[0]
    assert covered / draws >= 0.90


def test_probe_interval__r2_resamples_pairs_and_covers_the_population_r2():
    # y = x + noise with var(x) = var(noise) = 1, predicted by x: population R^2 = 1 - 1 / 2 = 0.5
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(1)
    covered, draws = 0, 100
    for draw in range(draws):
        x = rng.normal(size=300)
        y = x + rng.normal(size=300)
        interval = probe_interval(_regression(x[None, :], y), n_boot=300, seed=draw)
        assert interval.estimate[0] == pytest.approx(r2_score(y, x))
        covered += interval.low[0] <= 0.5 <= interval.high[0]
    assert covered / draws >= 0.85


def test_best_vs_last__small_p_when_the_best_layer_is_clearly_better():
    rng = np.random.default_rng(2)
    correct = np.stack([rng.random(300) < 0.9, rng.random(300) < 0.6]).astype(float)
    interval = probe_interval(_classification(correct), n_boot=1000)
    assert interval.best_layer == "l0" and interval.last_layer == "l1"
    assert interval.difference == pytest.approx(correct[0].mean() - correct[1].mean())
    assert 0 < interval.difference_low < interval.difference < interval.difference_high
    assert interval.p_value < 0.01
    assert interval.best_vs_last().startswith(f"{interval.difference:+.3f} [")


def test_best_vs_last__large_p_when_two_layers_are_equal():
    rng = np.random.default_rng(3)
    best = (rng.random(300) < 0.8).astype(float)
    same = probe_interval(_classification(np.stack([best, best])), n_boot=500)
    assert same.difference == 0 and same.p_value == 1.0  # every resample ties
    # the last layer differs on 20 inputs: right on 9 the best layer gets wrong, wrong on 11 it gets right
    last = best.copy()
    right, wrong = np.flatnonzero(best == 0)[:9], np.flatnonzero(best == 1)[:11]
    last[right], last[wrong] = 1, 0
    close = probe_interval(_classification(np.stack([best, last])), n_boot=1000)
    assert close.difference == pytest.approx(2 / 300)
    assert close.difference_low < 0 < close.difference_high and close.p_value > 0.2


def test_best_vs_last__a_last_best_layer_has_no_test():
    rng = np.random.default_rng(4)
    correct = np.stack([rng.random(100) < 0.5, rng.random(100) < 0.9]).astype(float)
    interval = probe_interval(_classification(correct), n_boot=100)
    assert interval.best_layer == interval.last_layer == "l1"
    assert interval.best_vs_last() == "the best layer is the last layer"


def test_probes__keep_each_inputs_out_of_fold_prediction(blobs):
    X, y = blobs()
    rng = np.random.default_rng(5)
    layers = {"noise": rng.normal(size=X.shape), "blobs": X}
    result = probe_accuracy_by_layer(layers, y, control="none")
    assert result.held_out.shape == (2, len(y)) and result.has_held_out
    pooled = (result.held_out == result.held_out_target).mean(1)
    np.testing.assert_allclose(pooled, probe_interval(result, n_boot=50).estimate)
    # stratified folds of (nearly) equal size: the pooled accuracy is the mean over folds, up to fold sizes
    np.testing.assert_allclose(pooled, result.mean, atol=0.01)
    target = X[:, 0] + rng.normal(size=len(y))
    ridge = probe_r2_by_layer(layers, target, control="none")
    assert ridge.held_out.shape == (2, len(y)) and np.isfinite(ridge.held_out).all()
    np.testing.assert_array_equal(ridge.held_out_target, target)


def test_probe_interval__stored_result_reads_back_with_predictions_and_old_ones_say_why(tmp_path, blobs, write_run):
    X, y = blobs()
    acts = write_run(tmp_path / "run", {"l0": X}, pd.DataFrame({"topic": np.array(["x", "y", "z"])[y]}))
    store = Store(tmp_path / "workspace")
    probe_by_layer_cached(acts, "topic", store)
    again = probe_by_layer_cached(acts, "topic", store)
    assert store.counts["probes", "hit"] == 1 and again.has_held_out
    assert probe_interval(again, n_boot=20).params["n_boot"] == 20
    old = make_result(["l0"], np.ones((1, 5)), np.ones((1, 5)), chance=0.3, metric="accuracy", n=10, n_dropped=0,
                      params={}, details={})
    with pytest.raises(LayerscopeError, match="stored before out-of-fold predictions were kept"):
        probe_interval(old)
    with pytest.raises(LayerscopeError, match="n_boot=5 must be an integer >= 10"):
        probe_interval(again, n_boot=5)
    with pytest.raises(LayerscopeError, match="level=1.5 must be a finite number"):
        probe_interval(again, level=1.5)


def test_probe_curve__draws_the_interval_band_and_names_it():
    rng = np.random.default_rng(6)
    correct = np.stack([rng.random(200) < 0.9, rng.random(200) < 0.6]).astype(float)
    result = _classification(correct)
    interval = probe_interval(result)
    names = [trace.name for trace in probe_curve(result, interval=interval).data]
    assert "95% bootstrap interval over inputs, 1000 resamples" in names
    assert any(name.startswith("best layer: l0 · vs last layer: +") for name in names)
    assert "95% bootstrap interval over inputs, 1000 resamples" not in [t.name for t in probe_curve(result).data]
