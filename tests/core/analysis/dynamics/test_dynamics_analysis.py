"""Dynamics of a checkpoint series: each matrix equals the single-run analyses, checkpoint by checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.dynamics import (
    DynamicsResult,
    checkpoint_maps,
    metric_by_checkpoint,
    similarity_to_final,
    steps_to_reach,
)
from core.errors import LayerscopeError


def test_metric_by_checkpoint__rows_equal_each_checkpoints_geometry(digits_checkpoints):
    from core.analysis.geometry import geometry_by_layer

    store, series = digits_checkpoints
    result = metric_by_checkpoint(store, series, "effective_rank")
    assert result.values.shape == (len(series), len(series.layers)) == (3, 3)
    for row, key in zip(result.values, series.run_keys):
        alone = geometry_by_layer(store.open_run(key), ("effective_rank",), store=None)
        np.testing.assert_allclose(row, alone.mean["effective_rank"], rtol=1e-10)
    assert result.steps == series.steps and result.layer_names == series.layers


def test_metric_by_checkpoint__is_read_back_from_the_store_and_reports_progress(digits_checkpoints):
    store, series = digits_checkpoints
    calls = []
    first = metric_by_checkpoint(store, series, "dataset_entropy", progress=lambda *call: calls.append(call))
    assert calls[-1][:2] == (3, 3)
    hits = store.counts["dynamics", "hit"]
    again = metric_by_checkpoint(store, series, "dataset_entropy")
    assert store.counts["dynamics", "hit"] == hits + 1
    np.testing.assert_array_equal(first.values, again.values)


@pytest.mark.slow
def test_metric_by_checkpoint__probe_rows_equal_each_checkpoints_probe(digits_checkpoints):
    from core.analysis.probes import probe_by_layer_cached

    store, series = digits_checkpoints
    result = metric_by_checkpoint(store, series, "probe", column="digit")
    for row, key in zip(result.values, series.run_keys):
        alone = probe_by_layer_cached(store.open_run(key), "digit", store, control="none", dropna=True,
                                      drop_rare=True)
        np.testing.assert_allclose(row, alone.mean)
    assert result.label == "probe accuracy (digit)" and result.params["analysis"]["control"] == "none"
    assert result.values[-1, -1] > result.values[0, -1]  # training makes the logits readable


def test_metric_by_checkpoint__refuses_curvature_on_a_pooled_series_and_an_unknown_column(digits_checkpoints):
    store, series = digits_checkpoints
    with pytest.raises(LayerscopeError, match="per-token series"):
        metric_by_checkpoint(store, series, "curvature")
    with pytest.raises(LayerscopeError, match="'colour' is not in run"):
        metric_by_checkpoint(store, series, "probe", column="colour")
    with pytest.raises(LayerscopeError, match="metric='rank' must be one of"):
        metric_by_checkpoint(store, series, "rank")


def test_similarity_to_final__cka_of_the_final_checkpoint_with_itself_is_one(digits_checkpoints):
    store, series = digits_checkpoints
    result = similarity_to_final(store, series, "linear_cka")
    np.testing.assert_allclose(result.values[-1], 1.0, atol=1e-12)
    assert np.all(result.values[:-1] < 1.0)  # the earlier checkpoints differ from the final one


def test_similarity_to_final__cells_equal_the_pair_function(digits_checkpoints):
    from core.analysis.similarity import linear_cka, mutual_knn

    store, series = digits_checkpoints
    final = store.open_run(series.final_key)
    for metric, pair in (("linear_cka", linear_cka), ("mutual_knn", mutual_knn)):
        result = similarity_to_final(store, series, metric)
        for i, key in enumerate(series.run_keys):
            acts = store.open_run(key)
            for j, layer in enumerate(series.layers):
                assert result.values[i, j] == pytest.approx(pair(acts.pooled(layer), final.pooled(layer)), abs=1e-9)


def test_checkpoint_maps__equal_the_aligned_projection_of_the_checkpoints(digits_checkpoints):
    from core.analysis.projection.aligned import aligned_projection

    store, series = digits_checkpoints
    maps = checkpoint_maps(store, series, "fc2")
    arrays = [np.asarray(store.open_run(key).pooled("fc2"), dtype=np.float32) for key in series.run_keys]
    expected = np.stack(aligned_projection(arrays, "pca"))
    assert maps.coords.shape == (3, 100, 2)
    np.testing.assert_allclose(maps.coords, expected, atol=1e-5)
    with pytest.raises(LayerscopeError, match="layer='relu1' is not in series"):
        checkpoint_maps(store, series, "relu1")


def _result(values, steps=(0.0, 1.0, 2.0, 3.0)) -> DynamicsResult:
    values = np.asarray(values, dtype=float)
    return DynamicsResult(quantity="linear_cka", label="CKA", unit="", series="s", steps=tuple(map(str, steps)),
                          step_values=np.asarray(steps, dtype=float), run_keys=("a",) * len(steps),
                          layer_names=("low", "high"), values=values, reasons=(), params={})


def test_steps_to_reach__counts_a_layer_from_the_step_after_its_last_dip():
    values = [[0.5, 0.2], [0.95, 0.92], [0.85, 0.95], [1.0, 1.0]]  # "low" passes 0.9 at 1, dips at 2
    assert steps_to_reach(_result(values), 0.9) == {"low": 3.0, "high": 1.0}
    assert steps_to_reach(_result(values), 0.8) == {"low": 1.0, "high": 1.0}
