"""geometry_by_layer: every metric at every layer, with NaN and a reason where undefined."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.geometry import (
    GeometryResult,
    anisotropy,
    curvature_per_input,
    effective_rank,
    geometry_by_layer,
    intrinsic_dimension,
    matrix_entropy,
)
from core.errors import LayerscopeError


def test_geometry_by_layer__tokens_run_matches_the_single_functions(tmp_path, rng, tokens_run):
    acts, offsets = tokens_run(tmp_path, rng)
    calls = []
    result = geometry_by_layer(acts, progress=lambda done, total, msg: calls.append((done, total)))
    assert isinstance(result, GeometryResult)
    assert result.layer_names == ("embed", "block.0", "block.1")
    assert calls[-1] == (18, 18) and len(calls) == 18

    values, skipped = curvature_per_input(acts["block.0"], offsets)
    assert result.mean["curvature"][1] == pytest.approx(np.nanmean(values))
    assert result.q25["curvature"][1] <= result.mean["curvature"][1] <= result.q75["curvature"][1]
    assert result.n_skipped["curvature"][1] == skipped == 2
    assert "2 of 62 inputs skipped (2 with fewer than 3 tokens)" in result.reasons["curvature"]

    means = np.stack([acts["embed"][offsets[i] : offsets[i + 1]].astype(np.float64).mean(0) for i in range(62)])
    assert result.mean["intrinsic_dimension"][0] == pytest.approx(intrinsic_dimension(means))
    assert result.mean["dataset_entropy"][0] == pytest.approx(matrix_entropy(means))
    assert result.mean["effective_rank"][0] == pytest.approx(effective_rank(means))
    assert result.mean["anisotropy_mean_cosine"][0] == pytest.approx(anisotropy(means)["mean_cosine"])
    assert np.isnan(result.q25["dataset_entropy"]).all()  # dataset-level: no spread

    # the constant layer: NaN with a reason, never a number
    for metric in result.metrics:
        if metric != "anisotropy_mean_cosine":  # constant non-zero rows have cosine 1: defined
            assert np.isnan(result.mean[metric][2]), metric
            assert result.layer_reasons[metric][2], metric
    assert "layer block.1" in result.reasons["dataset_entropy"]
    assert result.layer_reasons["dataset_entropy"][0] is None

    frame = result.to_frame()
    assert list(frame.columns) == ["layer", "metric", "value", "q25", "q75"]
    assert len(frame) == 3 * 7
    assert result.params["curvature_variant"] == "signed" and result.params["seed"] == 0


def test_geometry_by_layer__pooled_input_gives_per_token_metrics_nan_with_reason(rng):
    layers = {"a": rng.standard_normal((50, 8)), "b": rng.standard_normal((50, 8))}
    result = geometry_by_layer(layers, ["curvature", "prompt_entropy", "effective_rank"])
    assert np.isnan(result.mean["curvature"]).all() and np.isnan(result.mean["prompt_entropy"]).all()
    assert "needs pooling='tokens'" in result.reasons["curvature"]
    assert np.isfinite(result.mean["effective_rank"]).all() and result.reasons["effective_rank"] is None


def test_geometry_by_layer__subsamples_id_with_seed_and_records_it(rng, subspace_points):
    layers = {"a": subspace_points(3, 300, rng)}
    result = geometry_by_layer(layers, ["intrinsic_dimension"], max_points=100, seed=5)
    chosen = np.sort(np.random.default_rng(5).choice(300, 100, replace=False))
    assert result.mean["intrinsic_dimension"][0] == pytest.approx(intrinsic_dimension(layers["a"][chosen]))
    assert result.params["id_points_used"] == [100] and result.params["max_points"] == 100


def test_geometry_by_layer__rejects_unknown_metric_and_option(rng):
    layers = {"a": rng.standard_normal((30, 4))}
    with pytest.raises(LayerscopeError, match="'straightness'"):
        geometry_by_layer(layers, ["straightness"])
    with pytest.raises(LayerscopeError, match="id_fractoin"):
        geometry_by_layer(layers, ["effective_rank"], id_fractoin=0.5)
    with pytest.raises(LayerscopeError, match="curvature_variant|'sine'"):
        geometry_by_layer(layers, ["curvature"], curvature_variant="sine")


def test_geometry_by_layer__inputs_without_tokens_are_left_out_and_counted(tmp_path, rng, offsets_of, write_run):
    offsets = offsets_of([4, 0, 6, 5, 0, 7] * 5)
    acts = write_run(tmp_path / "runB", {"h": rng.standard_normal((offsets[-1], 8))}, pooling="tokens", offsets=offsets)
    result = geometry_by_layer(acts, ["effective_rank", "curvature"])
    assert result.n_skipped["effective_rank"][0] == 10 and result.n_skipped["curvature"][0] == 10
    assert "10 input(s) without tokens left out" in result.reasons["effective_rank"]
    means = np.stack([acts["h"][offsets[i] : offsets[i + 1]].mean(0) for i in range(30) if offsets[i + 1] > offsets[i]])
    assert result.mean["effective_rank"][0] == pytest.approx(effective_rank(means))
