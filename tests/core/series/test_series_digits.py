"""The bundled digits-mlp:series: seed 0's training saved at 22 steps, extracted as a series."""

from __future__ import annotations

import numpy as np
import pytest

import core
from core.series import extract_series

pytestmark = pytest.mark.slow  # trains digits-mlp twice (the series, then seed 0 alone) and extracts 23 runs


@pytest.fixture(scope="module")
def digits_series(tmp_path_factory):
    from core.store import Store

    store = Store(tmp_path_factory.mktemp("workspace"))
    digits = core.load_dataset("demo:digits", limit=300)
    return store, digits, extract_series("digits-mlp:series", digits, store=store)


def _accuracy(run) -> float:
    return float((run["logits"].argmax(axis=1) == run.labels("digit").astype(int)).mean())


def test_digits_series__has_at_least_20_checkpoints_with_rising_accuracy(digits_series):
    store, digits, series = digits_series
    assert len(series) >= 20 and series.steps[0] == "step 0" and series.step_values[-1] == 300.0
    assert list(series.step_values) == sorted(series.step_values)
    runs = [store.open_run(key) for key in series.run_keys]
    assert {r.meta["dataset"]["fingerprint"] for r in runs} == {digits.fingerprint}
    assert runs[5].model_name == f"digits-mlp:series@step={int(series.step_values[5])}"
    first, last = _accuracy(runs[0]), _accuracy(runs[-1])
    assert first < 0.3 and last > 0.95  # from chance (10 classes) to trained


def test_digits_series__last_checkpoint_is_digits_mlp_seed_0(digits_series):
    store, digits, series = digits_series
    final = store.open_run(series.final_key)
    trained = core.extract("digits-mlp:seed=0", digits, store=store)
    assert trained.layer_names == final.layer_names
    for layer in final.layer_names:
        np.testing.assert_array_equal(trained[layer], final[layer])


def test_digits_series__loads_one_checkpoint_by_name(digits_series):
    store, _, series = digits_series
    loaded = core.load_model("digits-mlp:series@step=15", workspace=store.root, device="cpu")
    run = store.open_run(series.run_keys[series.steps.index("step 15")])
    assert loaded.weights_hash == run.meta["model"]["weights"]
