"""Probe labels: classes, missing values, rare classes and the task picked for a column."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.probes import infer_task, probe_accuracy_by_layer
from core.errors import LayerscopeError


def test_probe_accuracy__one_class_is_refused():
    with pytest.raises(LayerscopeError, match="one class \\('cat'\\)"):
        probe_accuracy_by_layer({"x": np.ones((20, 3))}, ["cat"] * 20)


def test_probe_accuracy__too_many_classes_is_refused():
    X = np.random.default_rng(0).normal(size=(100, 4))
    with pytest.raises(LayerscopeError, match="labels have 60 distinct values, more than the 50 allowed"):
        probe_accuracy_by_layer({"x": X}, np.arange(100) % 60)


def test_probe_accuracy__missing_labels_need_dropna(blobs):
    X, y = blobs()
    labels = y.astype(object)
    labels[[0, 5, 70]] = None
    labels[100] = np.nan
    with pytest.raises(LayerscopeError, match="4 missing values .* dropna=True"):
        probe_accuracy_by_layer({"x": X}, labels)
    result = probe_accuracy_by_layer({"x": X}, labels, dropna=True)
    assert result.n_dropped == 4 and result.n == len(y) - 4
    with pytest.raises(LayerscopeError, match="there are 3 inputs, fewer than n_folds=5"):
        probe_accuracy_by_layer({"x": X[:7]}, np.array([None, None, None, None, "a", "b", "a"]), dropna=True)


def test_probe_accuracy__too_few_inputs_or_members_per_class(blobs):
    X, y = blobs()
    with pytest.raises(LayerscopeError, match="there are 4 inputs, fewer than n_folds=5"):
        probe_accuracy_by_layer({"x": X[:4]}, y[:4])
    labels = np.array(["big"] * 170 + ["rare"] * 3 + ["other"] * 7)
    with pytest.raises(LayerscopeError, match="1 class has fewer members than n_folds=5: 'rare' \\(3\\).*drop_rare"):
        probe_accuracy_by_layer({"x": X}, labels)
    result = probe_accuracy_by_layer({"x": X}, labels, drop_rare=True, control=False)
    assert result.n == 177 and result.n_dropped == 3 and result.params["dropped_classes"] == ["rare"]


def test_infer_task__strings_and_few_ints_are_classes_many_numbers_are_targets():
    assert infer_task(["Asia", "Europe", None]) == "classification"
    assert infer_task(np.arange(100) % 6) == "classification"
    assert infer_task([True, False] * 20) == "classification"
    assert infer_task(np.linspace(-60, 70, 100)) == "regression"
    assert infer_task(np.array([1.5, None] * 30 + list(range(40)), dtype=object)) == "regression"
