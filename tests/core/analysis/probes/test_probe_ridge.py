"""Regression probes: agreement with scikit-learn's RidgeCV on the same folds, bad targets."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from core.analysis.probes import probe_r2_by_layer
from core.errors import LayerscopeError


def test_probe_r2__matches_sklearn_ridgecv_tall_and_wide(sklearn_r2):
    from sklearn.datasets import make_regression

    alphas = np.logspace(-3, 3, 13)
    tall_X, tall_y = make_regression(n_samples=300, n_features=30, n_informative=8, noise=30.0, random_state=0)
    wide_X, wide_y = make_regression(n_samples=80, n_features=150, n_informative=10, noise=5.0, random_state=1)
    results = {}
    for name, X, y in (("tall", tall_X, tall_y), ("wide", wide_X, wide_y)):
        result = probe_r2_by_layer({"x": X + 50.0}, y, alphas=alphas)
        reference, chosen = sklearn_r2(X + 50.0, y, alphas)
        np.testing.assert_allclose(result.scores[0], reference, atol=0.01)
        np.testing.assert_array_equal(result.details["alpha"][0], chosen)
        assert result.metric == "r2" and result.chance == 0.0
        results[name] = result
    assert results["tall"].mean[0] > 0.5 and results["tall"].control_mean[0] < 0.1


def test_probe_r2__bad_targets_and_alphas(blobs):
    X, _ = blobs()
    with pytest.raises(LayerscopeError, match="targets must be numbers, got values such as 'Paris'"):
        probe_r2_by_layer({"x": X}, np.array(["Paris"] * 180, dtype=object))
    with pytest.raises(LayerscopeError, match="targets are constant \\(2.5\\)"):
        probe_r2_by_layer({"x": X}, np.full(180, 2.5))
    with pytest.raises(LayerscopeError, match="alphas=\\[0.0, 1.0\\] must be"):
        probe_r2_by_layer({"x": X}, X[:, 0], alphas=[0.0, 1.0])
    with pytest.raises(LayerscopeError, match="fewer than 2 \\* n_folds=10"):
        probe_r2_by_layer({"x": X[:8]}, X[:8, 0])
    targets = X[:, 0].copy()
    targets[:3] = np.nan
    with pytest.raises(LayerscopeError, match="3 missing values"):
        probe_r2_by_layer({"x": X}, targets)
    assert probe_r2_by_layer({"x": X}, targets, dropna=True, control=False).n_dropped == 3


def test_probe_r2__warns_nothing_and_accepts_activations(tmp_path, blobs, write_run):
    X, _ = blobs()
    target = X @ np.linspace(-1, 1, X.shape[1])
    acts = write_run(tmp_path / "run", {"l0": X}, pd.DataFrame({"t": target}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = probe_r2_by_layer(acts, target, control=False)
    assert result.mean[0] > 0.99
