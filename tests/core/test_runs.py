"""Run helpers shared by the analyses: layers, same inputs, the dataset of a run, the untrained twin."""

from __future__ import annotations

import numpy as np
import pytest

import core
from core.errors import LayerscopeError
from core.runs import (check_layer, check_layers, check_same_inputs, extract_twin, find_twin, is_untrained,
                       run_dataset, twin_name)

LAYERS = ["embeddings", "encoder.layer.5"]


@pytest.fixture(scope="module")
def pair(minilm, tmp_path_factory):
    """A minilm run of 12 sentences and its untrained twin, in one workspace."""
    from core.store import Store

    store = Store(tmp_path_factory.mktemp("runs_ws"))
    data = core.load_dataset("demo:sentences", limit=12)
    acts = core.extract(minilm, data, layers=LAYERS, pooling="mean", store=store)
    twin = extract_twin(store.list_runs()[0], store)
    return store, acts, twin


def test_check_layer__names_the_run_and_its_layers(pair):
    _, acts, _ = pair
    assert check_layer(acts, "embeddings") == "embeddings"
    with pytest.raises(LayerscopeError, match=r"layer 'nope' is not in run .*; it has embeddings, encoder.layer.5"):
        check_layer(acts, "nope")
    assert check_layers(acts, "all") == tuple(LAYERS)
    assert check_layers(acts, ["encoder.layer.5"]) == ("encoder.layer.5",)
    with pytest.raises(LayerscopeError, match=r"layers=\['x'\]: 'x' not in run"):
        check_layers(acts, ["x"])


def test_extract_twin__same_inputs_other_weights(pair):
    store, acts, twin = pair
    assert is_untrained(twin) and is_untrained(twin.meta) and not is_untrained(acts)
    assert twin.model_name == twin_name(acts) == "minilm (untrained, seed 0)"
    assert twin.meta["dataset"]["fingerprint"] == acts.meta["dataset"]["fingerprint"]
    assert twin.layer_names == acts.layer_names and twin.n_inputs == acts.n_inputs
    assert not np.allclose(twin["encoder.layer.5"], acts["encoder.layer.5"])
    check_same_inputs(acts, twin, purpose="comparing needs aligned rows")  # does not raise
    found = find_twin(acts, store.list_runs())
    assert found is not None and found["key"] == twin.key
    with pytest.raises(LayerscopeError, match="already from an untrained model"):
        extract_twin(twin, store)


def test_run_dataset__rebuilds_the_same_dataset(pair):
    _, acts, _ = pair
    data = run_dataset(acts)
    assert data.fingerprint == acts.meta["dataset"]["fingerprint"]
    assert len(data.table) == acts.n_inputs and "topic" in data.label_columns


def test_check_same_inputs__refuses_other_inputs(pair, minilm):
    store, acts, _ = pair
    other = core.extract(minilm, core.load_dataset("demo:sentences", limit=10), layers=LAYERS, store=store)
    with pytest.raises(LayerscopeError, match=r"did not see the same inputs in the same order; probing needs rows"):
        check_same_inputs(acts, other, purpose="probing needs rows aligned by input")
