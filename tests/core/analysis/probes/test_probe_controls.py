"""The probe's controls: shuffled labels and Hewitt & Liang's control task (one label per word type)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.analysis.probes import probe_accuracy_by_layer, probe_by_layer_cached, probe_r2_by_layer
from core.analysis.probes.controls import check_control, control_values, resolve_control, word_types
from core.errors import LayerscopeError
from core.store import Store

VOCABULARY = np.array([f"w{i:03d}" for i in range(40)])


def _register_types_hewitt_liang(types: list[str], dist: np.ndarray, seed: int) -> dict[str, int]:
    """Port of john-hewitt/control-tasks task.py, CorruptedPartOfSpeechLabelTask._register_type (all types corrupted).

    np.random.seed(args['seed']) in __init__; each new type gets
    int(np.random.choice(range(K), p=dist)) with dist the empirical label distribution.
    """
    np.random.seed(seed)
    vocab: dict[str, int] = {}
    for string in types:
        if string not in vocab:
            vocab[string] = int(np.random.choice(list(range(len(dist))), p=dist))
    return vocab


def _repeated_words(n: int = 400, d: int = 30, seed: int = 0):
    """Words drawn from VOCABULARY (each repeated), vectors = word embedding + small context noise, labels of words."""
    rng = np.random.default_rng(seed)
    words = VOCABULARY[rng.integers(0, len(VOCABULARY), size=n)]
    embedding = {w: rng.normal(size=d) for w in VOCABULARY}
    X = np.stack([embedding[w] for w in words]) + 0.1 * rng.normal(size=(n, d))
    word_label = {w: int(i % 3) for i, w in enumerate(VOCABULARY)}
    return X, np.array([word_label[w] for w in words]), words


# ----- the control labels -------------------------------------------------------------------------
def test_task_control__one_label_per_type_fixed_by_the_seed_not_by_row_order():
    _, codes, words = _repeated_words()
    types = word_types(words)
    labels = control_values(codes, "task", 0, types)
    for word in VOCABULARY:  # every occurrence of a type carries the same label
        assert len(set(labels[types == word])) == 1
    shuffled = control_values(codes, "shuffled", 0, types)
    assert any(len(set(shuffled[types == word])) > 1 for word in VOCABULARY)  # the variants differ here
    np.testing.assert_array_equal(labels, control_values(codes, "task", 0, types))
    other = control_values(codes, "task", 1, types)
    per_type = {w: labels[types == w][0] for w in VOCABULARY}
    per_type_other = {w: other[types == w][0] for w in VOCABULARY}
    assert sum(per_type[w] != per_type_other[w] for w in VOCABULARY) >= 10  # another seed, other labels
    order = np.random.default_rng(5).permutation(len(codes))
    permuted = control_values(codes[order], "task", 0, types[order])
    assert all(permuted[types[order] == w][0] == per_type[w] for w in VOCABULARY)


def test_task_control__draws_each_type_from_the_empirical_labels_like_hewitt_and_liang():
    rng = np.random.default_rng(0)
    n_types, K = 4000, 4
    dist = np.array([0.55, 0.25, 0.15, 0.05])
    codes = rng.choice(K, size=2 * n_types, p=dist)  # the labels of the occurrences
    types = word_types(np.array([f"t{i}" for i in range(n_types)] * 2))
    ours = control_values(codes, "task", 3, types)[:n_types]  # one label per type
    empirical = np.bincount(codes, minlength=K) / len(codes)
    theirs = _register_types_hewitt_liang(list(types[:n_types]), empirical, seed=3)
    ours_share = np.bincount(ours, minlength=K) / n_types
    theirs_share = np.bincount(list(theirs.values()), minlength=K) / n_types
    sd = np.sqrt(empirical * (1 - empirical) / n_types)
    assert np.all(np.abs(ours_share - empirical) < 4 * sd)  # the same distribution as theirs
    assert np.all(np.abs(ours_share - theirs_share) < 6 * sd)


@pytest.mark.parametrize(
    "texts, expected", [(["cat", " dog ", "cat"], "task"), (["a cat", "dog"], "shuffled"), (["", "dog"], "shuffled")]
)
def test_resolve_control__auto_is_the_task_control_for_single_words(texts, expected):
    assert resolve_control("auto", word_types(texts)) == expected
    assert resolve_control("auto", None) == "shuffled"  # no texts: no types
    assert resolve_control("shuffled", word_types(texts)) == "shuffled"


def test_resolve_control__task_on_sentences_or_bad_names_are_refused():
    with pytest.raises(LayerscopeError, match=r"1 of 2 inputs are not single words \(e.g. 'a cat'\)"):
        resolve_control("task", word_types(["a cat", "dog"]))
    with pytest.raises(LayerscopeError, match="pass types="):
        resolve_control("task", None)
    with pytest.raises(LayerscopeError, match="control='random' must be one of: auto, shuffled, task, none"):
        check_control("random")
    assert check_control(True) == "shuffled" and check_control(False) == "none"


# ----- probes with the control task -----------------------------------------------------------------
def test_probe_accuracy__task_control_is_memorised_where_shuffled_labels_are_not():
    X, y, words = _repeated_words()
    task = probe_accuracy_by_layer({"x": X}, y, control="task", types=words)
    shuffled = probe_accuracy_by_layer({"x": X}, y, control="shuffled", types=words)
    assert task.params["control"] == "task" and shuffled.params["control"] == "shuffled"
    assert task.params["n_types"] == 40 and "word type" in task.params["control_labels"]
    np.testing.assert_array_equal(task.scores, shuffled.scores)  # the probe itself does not change
    # words recur across folds with one label each: a probe memorises them; shuffled labels cannot be fitted
    assert task.control_mean[0] > 0.8 and shuffled.control_mean[0] < 0.55
    np.testing.assert_allclose(task.selectivity, task.mean - task.control_mean)
    assert task.selectivity[0] < shuffled.selectivity[0]
    assert task.details["control_converged"].all()
    with pytest.raises(LayerscopeError, match="types has 3 values but there are 400 labels"):
        probe_accuracy_by_layer({"x": X}, y, control="task", types=words[:3])


def test_probe_accuracy__task_control_matches_converged_sklearn(sklearn_accuracy):
    X, y, words = _repeated_words(n=150, d=200, seed=1)  # d > n: the control is nearly separable
    X = X + np.random.default_rng(2).normal(size=X.shape)  # contexts that vary more
    result = probe_accuracy_by_layer({"x": X}, y, control="task", types=words, seed=4)
    labels = control_values(y, "task", 4, word_types(words))
    reference = sklearn_accuracy(X, labels, seed=4, strata=y, tol=1e-10)  # the probe's folds
    assert abs(result.control_mean[0] - reference.mean()) * 100 <= 1.0
    assert abs(result.mean[0] - sklearn_accuracy(X, y, seed=4, tol=1e-10).mean()) * 100 <= 1.0


def test_probe_r2__task_control_gives_one_target_per_word():
    X, y, words = _repeated_words()
    targets = y + 0.1 * np.random.default_rng(3).normal(size=len(y))
    control = control_values(targets, "task", 0, word_types(words))
    assert all(len(set(control[words == w])) == 1 for w in VOCABULARY) and set(control) <= set(targets)
    result = probe_r2_by_layer({"x": X}, targets, control="task", types=words)
    shuffled = probe_r2_by_layer({"x": X}, targets, control="shuffled", types=words)
    assert result.params["control"] == "task" and result.mean[0] > 0.5
    # one target per word is fitted as the real per-word targets are; shuffled targets are not
    assert result.control_mean[0] > 0.5 and shuffled.control_mean[0] < 0.1
    none = probe_r2_by_layer({"x": X}, targets, control="none", types=words)
    assert none.params["control"] == "none" and np.isnan(none.control_mean).all()


# ----- a run's word types ---------------------------------------------------------------------------
def _run_with_texts(folder, write_run, texts, X, labels):
    """A hand-written run whose table has a text column (its inputs' texts)."""
    acts = write_run(folder, {"l0": X}, pd.DataFrame({"label": labels}))
    table = pd.DataFrame({"text": texts, "label": labels})
    table.to_parquet(folder / "table.parquet")
    meta = json.loads((folder / "meta.json").read_text())
    meta["dataset"].update(text_column="text", label_columns=["label"])
    (folder / "meta.json").write_text(json.dumps(meta))
    return type(acts)(folder, meta)


def test_probe_by_layer_cached__word_runs_default_to_the_task_control(tmp_path, write_run):
    X, y, words = _repeated_words()
    store = Store(tmp_path / "workspace")
    acts = _run_with_texts(tmp_path / "words", write_run, words, X, np.array(["a", "b", "c"])[y])
    auto = probe_by_layer_cached(acts, "label", store)
    assert auto.params["control"] == "task" and auto.control_mean[0] > 0.8
    shuffled = probe_by_layer_cached(acts, "label", store, control="shuffled")
    assert shuffled.params["control"] == "shuffled" and shuffled.control_mean[0] < 0.55
    assert store.counts["probes", "miss"] == 2  # the control is part of the key

    sentences = np.array([f"the {w} sat" for w in words])
    run = _run_with_texts(tmp_path / "sentences", write_run, sentences, X, np.array(["a", "b", "c"])[y])
    assert probe_by_layer_cached(run, "label", store).params["control"] == "shuffled"
    with pytest.raises(LayerscopeError, match="control='task' is not offered for run .*not single words"):
        probe_by_layer_cached(run, "label", store, control="task")


def test_stored_control__results_that_recorded_a_switch_read_as_named_controls():
    from core.analysis.probes.controls import stored_control

    assert stored_control({"control": True}) == stored_control({}) == "shuffled"  # results of PROBE_VERSION 1
    assert stored_control({"control": False}) == "none" and stored_control({"control": "task"}) == "task"
