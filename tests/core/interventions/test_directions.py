"""Directions from a real minilm run: unit norm, width, sign, stored and exported with their provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

import core
from core.errors import LayerscopeError
from core.interventions import (
    export_direction,
    list_directions,
    load_direction,
    make_direction,
    save_direction,
)

LAYERS = ["encoder.layer.1", "encoder.layer.3", "encoder.layer.5"]
LAYER = "encoder.layer.3"


@pytest.fixture(scope="module")
def sentences_run(minilm, session_store):
    """minilm on the first 120 demo sentences, mean-pooled (shared through the session workspace)."""
    return core.extract(minilm, core.load_dataset("demo:sentences", limit=120), layers=LAYERS, pooling="mean",
                        store=session_store)


@pytest.mark.parametrize("source", ["mean_difference", "probe", "contrast_pca"])
def test_make_direction__unit_width_and_sign_point_to_the_positive_class(sentences_run, source):
    direction = make_direction(source, sentences_run, LAYER, "sentiment", "positive", "negative")
    X = np.asarray(sentences_run[LAYER])
    projected = X @ direction.vector
    labels = sentences_run.labels("sentiment")
    assert direction.width == sentences_run.dim(LAYER)
    assert np.linalg.norm(direction.vector) == pytest.approx(1.0, abs=1e-5)
    assert projected[labels == "positive"].mean() > projected[labels == "negative"].mean()
    assert direction.scale == pytest.approx(np.linalg.norm(X, axis=1).mean(), rel=1e-5)
    assert direction.provenance["run"] == sentences_run.key and direction.layer == LAYER


def test_mean_difference__is_the_normalised_difference_of_class_means(sentences_run):
    direction = make_direction("mean_difference", sentences_run, LAYER, "topic", "sports")
    X = np.asarray(sentences_run[LAYER], dtype=np.float64)
    sports = sentences_run.labels("topic") == "sports"
    expected = X[sports].mean(0) - X[~sports].mean(0)
    np.testing.assert_allclose(direction.vector, expected / np.linalg.norm(expected), atol=1e-6)
    assert direction.name == f"topic: sports - rest @ {LAYER}"


def test_direction__stored_listed_loaded_and_exported_equal(sentences_run, session_store, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    direction = make_direction("probe", sentences_run, LAYER, "topic", "food", C=0.5, name="food probe")
    key = save_direction(session_store, direction)
    assert key in [k for k, _ in list_directions(session_store)]
    loaded = load_direction(session_store, key)
    np.testing.assert_array_equal(loaded.vector, direction.vector)
    assert (loaded.name, loaded.layer, loaded.provenance, loaded.scale) == (
        "food probe", LAYER, direction.provenance, direction.scale)

    path = export_direction(loaded, tmp_path / "food")
    assert path.name == "food.safetensors"
    np.testing.assert_array_equal(load_file(str(path))["direction"], direction.vector)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta["layer"] == LAYER and json.loads(meta["provenance"])["C"] == 0.5
    assert float(meta["scale"]) == direction.scale


def test_export_direction__refuses_names_leaving_the_folder(sentences_run, tmp_path):
    direction = make_direction("mean_difference", sentences_run, LAYER, "sentiment", "positive")
    with pytest.raises(LayerscopeError, match=r"'\.\.' is not allowed"):
        export_direction(direction, "../outside", folder=tmp_path)
    assert export_direction(direction, "inside", folder=tmp_path).parent == tmp_path.resolve()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "magic"}, "source='magic' must be one of: probe, mean_difference"),
        ({"layer": "encoder.layer.9"}, "layer 'encoder.layer.9' is not in run"),
        ({"label": "colour"}, "label='colour' is not a label column .* it has topic, sentiment"),
        ({"positive": "joyful"}, "positive='joyful' is not a class of label 'sentiment'; it has negative, positive"),
        ({"negative": "positive"}, "negative='positive' is the positive class"),
    ],
)
def test_make_direction__bad_input_names_what_is_allowed(sentences_run, kwargs, message):
    args = {"source": "mean_difference", "layer": LAYER, "label": "sentiment", "positive": "positive",
            "negative": None, **kwargs}
    with pytest.raises(LayerscopeError, match=message):
        make_direction(args.pop("source"), sentences_run, **args)


def test_sae_feature_direction__is_the_decoder_row_of_a_trained_sae(minilm, store):
    from core.analysis.sae import SAEConfig, open_sae, train_sae_on_run

    acts = core.extract(minilm, core.load_dataset("demo:sentences", limit=24), layers=[LAYER], pooling="tokens",
                        store=store)
    config = SAEConfig(expansion=1.0, k=8, batch_size=64, lr=2e-3, training_tokens=64 * 4)
    sae_key = train_sae_on_run(acts, LAYER, config, store=store).key
    W_dec = open_sae(store, sae_key).sae.W_dec.detach().numpy().astype(np.float64)
    feature = int(np.argmax(np.linalg.norm(W_dec, axis=1)))

    direction = make_direction("sae_feature", store=store, sae_key=sae_key, feature=feature)
    np.testing.assert_allclose(direction.vector, W_dec[feature] / np.linalg.norm(W_dec[feature]), atol=1e-6)
    assert direction.width == acts.dim(LAYER) and direction.layer == LAYER and direction.source == "sae_feature"
    tokens = np.asarray(acts[LAYER], dtype=np.float64)  # one row per token: the scale is over tokens
    assert direction.scale == pytest.approx(np.linalg.norm(tokens, axis=1).mean(), rel=1e-5)
    assert direction.provenance["sae"] == sae_key and direction.provenance["feature"] == feature
    with pytest.raises(LayerscopeError, match=f"feature={len(W_dec)} must be"):
        make_direction("sae_feature", store=store, sae_key=sae_key, feature=len(W_dec))
