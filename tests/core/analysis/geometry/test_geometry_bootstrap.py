"""Bands over resampled inputs for intrinsic dimension, dataset entropy and effective rank."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.geometry import GeometryBands, effective_rank, geometry_bands, geometry_by_layer
from core.errors import LayerscopeError
from core.store import Store

SPECTRUM = np.array([4.0, 2.0, 1.0, 0.5])  # covariance eigenvalues of the Gaussian data


def _population_effective_rank(eigenvalues: np.ndarray) -> float:
    """exp(Shannon entropy) of the normalised singular values sqrt(lambda) (Roy & Vetterli 2007)."""
    p = np.sqrt(eigenvalues) / np.sqrt(eigenvalues).sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _gaussian(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(SPECTRUM))) * np.sqrt(SPECTRUM)


def test_effective_rank_band__covers_the_population_value_in_most_draws(one_thread):
    truth = _population_effective_rank(SPECTRUM)
    covered = []
    for draw in range(12):
        bands = geometry_bands({"x": _gaussian(400, draw)}, ["effective_rank"], n_boot=40, bootstrap_seed=draw,
                               device="cpu")
        covered.append(bands.low["effective_rank"][0] <= truth <= bands.high["effective_rank"][0])
    assert np.mean(covered) >= 0.75


def test_spectral_bands__contain_the_full_data_value_and_narrow_as_n_grows(one_thread):
    widths = []
    for n in (100, 1600):
        X = _gaussian(n, 7)
        bands = geometry_bands({"x": X}, ["effective_rank", "dataset_entropy"], n_boot=40, device="cpu")
        assert bands.full["effective_rank"][0] == pytest.approx(effective_rank(X, device="cpu"))
        for metric in bands.metrics:
            assert bands.low[metric][0] <= bands.full[metric][0] <= bands.high[metric][0]
            assert bands.reasons[metric] is None and bands.n_valid[metric][0] == 40
        widths.append(bands.high["effective_rank"][0] - bands.low["effective_rank"][0])
    assert widths[1] < widths[0] / 2  # about 1 / sqrt(16) as wide


def test_intrinsic_dimension_band__uses_subsamples_without_replacement(one_thread):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 12))  # a 3-dim Gaussian in 12 dimensions
    X = np.concatenate([X, X[:30]])  # 30 repeated inputs: with replacement they would be everywhere
    bands = geometry_bands({"x": X}, ["intrinsic_dimension"], n_boot=30, device="cpu")
    low, full, high = (v["intrinsic_dimension"][0] for v in (bands.low, bands.full, bands.high))
    assert low <= full <= high and 2.0 < low and high < 4.0
    assert full == pytest.approx(geometry_by_layer({"x": X}, ["intrinsic_dimension"], device="cpu")
                                 .mean["intrinsic_dimension"][0])
    assert bands.name("intrinsic_dimension") == ("95% interval over 30 subsamples of 80% of inputs "
                                                 "(without replacement)")
    assert bands.name("effective_rank") == "95% bootstrap interval over inputs, 30 resamples"


def test_spectral_bands__say_when_there_are_not_many_more_inputs_than_dimensions(one_thread):
    X = np.random.default_rng(4).normal(size=(40, 100))  # n < d: a resample's duplicates lower its rank
    bands = geometry_bands({"x": X}, ["effective_rank"], n_boot=20, device="cpu")
    assert bands.high["effective_rank"][0] < bands.full["effective_rank"][0]
    assert "lies outside the band at x" in bands.reasons["effective_rank"]


def test_geometry_bands__are_cached_in_the_store_with_every_setting(tmp_path, write_run, one_thread):
    rng = np.random.default_rng(5)
    acts = write_run(tmp_path / "run", {"l0": rng.normal(size=(60, 5)), "l1": rng.normal(size=(60, 3))})
    store = Store(tmp_path / "workspace")
    assert geometry_bands(acts, ["effective_rank"], store=store, n_boot=10, stored_only=True) is None
    first = geometry_bands(acts, ["effective_rank"], store=store, n_boot=10)
    again = geometry_bands(acts, ["effective_rank"], store=store, n_boot=10, stored_only=True)
    assert isinstance(again, GeometryBands) and store.counts["geometry_bands", "hit"] == 1
    np.testing.assert_array_equal(first.low["effective_rank"], again.low["effective_rank"])
    assert again.params["n_boot"] == 10 and again.params["level"] == 0.95 and again.params["bootstrap_seed"] == 0
    other = geometry_bands(acts, ["effective_rank"], store=store, n_boot=10, bootstrap_seed=1)
    assert not np.array_equal(other.low["effective_rank"], first.low["effective_rank"])


def test_geometry_bands__refuse_bad_settings():
    X = {"x": np.zeros((30, 3))}
    with pytest.raises(LayerscopeError, match="n_boot=5 must be an integer >= 10"):
        geometry_bands(X, n_boot=5)
    with pytest.raises(LayerscopeError, match="metrics='curvature' must be one of: intrinsic_dimension"):
        geometry_bands(X, ["curvature"])
    with pytest.raises(LayerscopeError, match="subsample=1.0 must be a finite number > 0 and < 1"):
        geometry_bands(X, subsample=1.0)
