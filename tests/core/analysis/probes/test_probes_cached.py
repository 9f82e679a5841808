"""Probing a run's label column through the store: task choice, hits, older entries, real models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.analysis.probes import PROBE_VERSION, ProbeResult, cached, probe_accuracy_by_layer, probe_by_layer_cached
from core.errors import LayerscopeError
from core.store import Store


def test_probe_by_layer_cached__second_call_reads_the_store(tmp_path, monkeypatch, blobs, write_run):
    X, y = blobs()
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"topic": np.array(["x", "y", "z"])[y], "latitude": X[:, 0] * 3 + rng.normal(size=len(y))})
    acts = write_run(tmp_path / "run", {"l0": rng.normal(size=X.shape), "l1": X}, table)
    store = Store(tmp_path / "workspace")
    calls = []
    real = cached.probe_accuracy_by_layer

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cached, "probe_accuracy_by_layer", counting)
    first = probe_by_layer_cached(acts, "topic", store)
    again = probe_by_layer_cached(acts, "topic", store)
    assert len(calls) == 1 and isinstance(again, ProbeResult)
    assert store.counts["probes", "miss"] == store.counts["probes", "hit"] == 1
    np.testing.assert_array_equal(first.scores, again.scores)
    np.testing.assert_array_equal(first.control_scores, again.control_scores)
    assert again.layer_names == ("l0", "l1") and again.best_layer == "l1" and again.metric == "accuracy"
    assert again.params["classes"] == ["x", "y", "z"] and again.details["n_iter"].shape == (2, 5)
    probe_by_layer_cached(acts, "topic", store, C=0.1)  # another parameter: another entry
    assert len(calls) == 2

    regression = probe_by_layer_cached(acts, "latitude", store)  # float column: ridge, R^2
    assert regression.metric == "r2" and regression.best_layer == "l1" and regression.mean[1] > 0.9
    forced = probe_by_layer_cached(acts, "latitude", store, task="regression", layers=["l1"])
    np.testing.assert_array_equal(forced.scores[0], regression.scores[1])
    assert len(list((store.root / "results" / "probes").iterdir())) == 4
    with pytest.raises(LayerscopeError, match="task='ordinal' is not supported"):
        probe_by_layer_cached(acts, "topic", store, task="ordinal")
    with pytest.raises(LayerscopeError, match="label column 'colour' is not in run"):
        probe_by_layer_cached(acts, "colour", store)
    with pytest.raises(LayerscopeError, match="'l9' not in run"):
        probe_by_layer_cached(acts, "topic", store, layers=["l1", "l9"])


def test_probe_by_layer_cached__reads_an_entry_in_the_layout_before_the_codec(tmp_path, blobs, write_run):
    X, y = blobs()
    table = pd.DataFrame({"topic": np.array(["x", "y", "z"])[y]})
    acts = write_run(tmp_path / "run", {"l0": X}, table)
    store = Store(tmp_path / "workspace")
    result = probe_accuracy_by_layer({"l0": X}, table["topic"].to_numpy())
    params = {  # the key today's probe_by_layer_cached builds for its defaults
        "run": acts.key, "column": "topic", "task": "classification", "layers": ["l0"], "n_folds": 5, "seed": 0,
        "control": "shuffled", "dropna": False, "version": PROBE_VERSION, "C": 1.0, "max_iter": 1000, "tol": 1e-4,
        "drop_rare": False,
    }
    arrays = {"scores": result.scores, "control_scores": result.control_scores}
    arrays.update({f"details__{key}": value for key, value in result.details.items()})
    meta = {
        "layer_names": list(result.layer_names), "chance": result.chance, "metric": result.metric,
        "n": result.n, "n_dropped": result.n_dropped, "result_params": result.params,
    }
    store.save_result("probes", params, arrays, meta)
    again = probe_by_layer_cached(acts, "topic", store)
    assert store.counts["probes", "hit"] == 1 and not store.counts["probes", "miss"]
    np.testing.assert_array_equal(again.scores, result.scores)
    np.testing.assert_array_equal(again.details["n_iter"], result.details["n_iter"])
    assert again.layer_names == ("l0",) and again.params == result.params


# ----- the real thing ---------------------------------------------------------------------
@pytest.mark.slow
def test_probe_by_layer_cached__minilm_knows_the_topic_of_demo_sentences(minilm, sentences, store, sklearn_accuracy):
    import core

    acts = core.extract(minilm, sentences, layers="all", pooling="mean", store=store)
    result = probe_by_layer_cached(acts, "topic", store)
    assert result.layer_names == tuple(acts.layer_names) and result.chance == pytest.approx(1 / 6)
    assert result.mean[-1] > 0.9 and result.selectivity[-1] > 0.6  # a sentence encoder knows topics
    assert np.all(np.abs(result.control_mean - 1 / 6) < 0.1)
    for i, layer in enumerate(acts.layer_names):  # every layer within 1 point of sklearn
        reference = sklearn_accuracy(np.asarray(acts[layer]), acts.labels("topic"))
        assert abs(result.mean[i] - reference.mean()) * 100 <= 1.0, layer


@pytest.mark.slow
def test_probe_by_layer_cached__minilm_continent_of_cities_matches_sklearn(minilm, store, sklearn_accuracy):
    import core

    acts = core.extract(minilm, core.load_dataset("demo:cities"), layers="all", pooling="mean", store=store)
    result = probe_by_layer_cached(acts, "continent", store, control=False)
    assert result.mean.max() > result.chance + 0.05  # city names carry some of where they are
    names = acts.layer_names  # sklearn on 3,000 inputs is slow: the first, a middle and the last layer
    for i, layer in [(i, names[i]) for i in (0, len(names) // 2, len(names) - 1)]:
        reference = sklearn_accuracy(np.asarray(acts[layer]), acts.labels("continent"))
        assert abs(result.mean[i] - reference.mean()) * 100 <= 1.0, layer


@pytest.mark.slow
def test_probe_by_layer_cached__minilm_tokens_run_of_repeated_words_uses_the_task_control(
    minilm, store, tmp_path, sklearn_accuracy
):
    import core
    from core.analysis.probes.controls import control_values, word_types

    words = core.load_dataset("demo:words", limit=30).table[["text", "polarity"]]
    csv = tmp_path / "words.csv"
    pd.concat([words] * 3, ignore_index=True).to_csv(csv, index=False)  # a user's list where words recur
    acts = core.extract(minilm, core.load_dataset(csv), layers="all", pooling="tokens", store=store)
    task = probe_by_layer_cached(acts, "polarity", store)  # single words: the control task by default
    shuffled = probe_by_layer_cached(acts, "polarity", store, control="shuffled")
    assert task.params["control"] == "task" and task.params["n_types"] == 30
    np.testing.assert_allclose(task.selectivity, task.mean - task.control_mean)
    np.testing.assert_array_equal(task.scores, shuffled.scores)
    # a word's occurrences are identical inputs with one control label: the probe memorises them
    assert task.control_mean.min() > 0.8 and shuffled.control_mean.max() < 0.7
    assert (task.selectivity < shuffled.selectivity).all()
    labels = acts.labels("polarity")
    codes = np.unique(labels, return_inverse=True)[1]
    control = control_values(codes, "task", 0, word_types(acts.texts))
    for i, layer in enumerate(acts.layer_names):  # the control converges as sklearn's does
        X = acts.pooled(layer)
        reference = sklearn_accuracy(X, control, strata=codes, tol=1e-10)
        assert abs(task.control_mean[i] - reference.mean()) * 100 <= 1.0, layer
