"""extract_series on a folder of checkpoint folders: one run per checkpoint, same inputs, linked in order."""

from __future__ import annotations

import numpy as np
import pytest

from core.series import extract_series, list_series, open_series


def test_extract_series__folder_of_checkpoints__runs_in_step_order_on_shared_tokens(gpt2_checkpoints, few_sentences,
                                                                                  store):
    messages = []
    series = extract_series(str(gpt2_checkpoints), few_sentences, pooling="tokens", store=store,
                            progress=lambda done, total, what: messages.append((done, total, what)))
    assert series.steps == ("checkpoint-50", "checkpoint-900", "checkpoint-1000")  # by step, not by name
    assert series.step_values == (50.0, 900.0, 1000.0)
    assert len(series) == 3 and len(set(series.run_keys)) == 3 and series.name == "out"
    runs = [store.open_run(key) for key in series.run_keys]
    assert {r.meta["dataset"]["fingerprint"] for r in runs} == {few_sentences.fingerprint}
    for run, label in zip(runs, series.steps):
        assert run.model_name.endswith(label) and run.layer_names == list(series.layers)
        np.testing.assert_array_equal(run.token_ids, runs[0].token_ids)
        np.testing.assert_array_equal(run.offsets, runs[0].offsets)
    last = series.layers[-1]
    assert not np.allclose(runs[0][last], runs[1][last]) and not np.allclose(runs[1][last], runs[2][last])
    assert ("checkpoint 2 of 3: checkpoint-900") in [m[2] for m in messages]
    assert any(m[2].startswith("checkpoint 3 of 3: checkpoint-1000: batch") for m in messages)
    assert messages[-1][:2] == (3, 3)
    assert open_series(store, series.key) == series and [s.key for s in list_series(store)] == [series.key]

    messages.clear()  # again: the stored runs are read, nothing is extracted, the same series comes back
    again = extract_series(str(gpt2_checkpoints), few_sentences, pooling="tokens", store=store,
                           progress=lambda done, total, what: messages.append((done, total, what)))
    assert again == series and len(list_series(store)) == 1
    assert not [m for m in messages if "batch" in m[2]]


def test_extract_series__revisions_pick_subfolders_in_the_order_given(gpt2_checkpoints, few_sentences, store):
    series = extract_series(str(gpt2_checkpoints), few_sentences, layers="transformer.h.1", store=store,
                            revisions=["checkpoint-900", "checkpoint-1000"], name="late training")
    assert series.steps == ("checkpoint-900", "checkpoint-1000") and series.name == "late training"


def test_shared_tokenizer__tokenises_each_input_list_once_and_hands_out_copies():
    from family_builders import minilm_tokenizer

    from core.series.checks import SharedTokenizer

    shared = SharedTokenizer(minilm_tokenizer())
    texts = ["the cat sat", "on the mat"]
    ids = shared(texts, truncation=False, add_special_tokens=True)["input_ids"]
    ids[0].append(999)  # extraction edits what it gets; the next checkpoint must not see it
    again = shared(texts, truncation=False, add_special_tokens=True)["input_ids"]
    assert shared.calls == 1 and again[0][-1] == 102 and again == shared.tokenizer(texts)["input_ids"]
    assert shared.pad_token_id == 0  # everything else is the wrapped tokenizer's


@pytest.mark.parametrize("name, step", [("checkpoint-1000", 1000), ("step1000", 1000), ("epoch_3", 3),
                                        ("global_step500", 500), ("run7-ckpt-20", 20), ("final", None)])
def test_step_in_name__reads_the_training_step(name, step):
    from core.series.checkpoints import step_in_name

    assert step_in_name(name) == step
