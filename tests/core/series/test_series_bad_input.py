"""Checkpoint series refused with a message naming the bad value, and nothing linked."""

from __future__ import annotations

import pytest
from conftest import save_gpt2

from core.errors import LayerscopeError
from core.series import extract_series, list_series


def test_extract_series__checkpoints_of_two_architectures__names_the_checkpoint_and_parameter(tmp_path, few_sentences,
                                                                                                store):
    save_gpt2(tmp_path / "ckpt" / "step1", seed=0, width=32)
    save_gpt2(tmp_path / "ckpt" / "step2", seed=1, width=64)
    with pytest.raises(LayerscopeError, match=r"checkpoint 'step2' has another architecture than 'step1': "
                                              r"parameter 'wte.weight' is \(30522, 64\) there and \(30522, 32\) "
                                              r"in 'step1'"):
        extract_series(str(tmp_path / "ckpt"), few_sentences, layers="transformer.h.1", store=store)
    assert list_series(store) == [] and not store.runs_dir.exists()  # told from the configs, before any extraction


def test_extract_series__revision_not_cached_offline__names_the_revision(monkeypatch, store, few_sentences):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LayerscopeError, match=r"revision 'step1000' of 'layerscope-tests/no-such-model' is not in "
                                              r"the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        extract_series("layerscope-tests/no-such-model", few_sentences, revisions=["step1000", "step2000"],
                       store=store)


@pytest.mark.parametrize("revisions, message", [
    (["step1000"], r"revisions=\['step1000'\]: a checkpoint series needs at least 2 checkpoints"),
    (["step1", "step1"], r"revisions=\['step1', 'step1'\] names 'step1' more than once"),
    (None, r"model 'layerscope-tests/no-such-model' is a hub id: give the checkpoints as revisions"),
])
def test_extract_series__hub_id_without_two_revisions__is_refused(revisions, message, store, few_sentences):
    with pytest.raises(LayerscopeError, match=message):
        extract_series("layerscope-tests/no-such-model", few_sentences, revisions=revisions, store=store)


def test_extract_series__folder_of_one_checkpoint__needs_two(tmp_path, few_sentences, store):
    save_gpt2(tmp_path / "ckpt" / "checkpoint-10", seed=0)
    with pytest.raises(LayerscopeError, match=r"at least 2 checkpoints; '.*ckpt' has 1 \(checkpoint-10\)"):
        extract_series(str(tmp_path / "ckpt"), few_sentences, store=store)


def test_extract_series__empty_folder__says_what_to_put_in_it(tmp_path, few_sentences, store):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayerscopeError, match=r"folder '.*empty' holds no checkpoint folders"):
        extract_series(str(tmp_path / "empty"), few_sentences, store=store)


def test_extract_series__subfolders_not_models__names_them(tmp_path, few_sentences, store):
    for name in ("logs", "plots"):
        (tmp_path / "out" / name).mkdir(parents=True)
    with pytest.raises(LayerscopeError, match=r"folder '.*out': none of its subfolders \(logs, plots\) is a model"):
        extract_series(str(tmp_path / "out"), few_sentences, store=store)


def test_extract_series__one_model_folder__is_not_a_series(gpt2_checkpoints, few_sentences, store):
    with pytest.raises(LayerscopeError, match=r"is one model folder \(it has config.json\)"):
        extract_series(str(gpt2_checkpoints / "checkpoint-50"), few_sentences, store=store)


def test_extract_series__revision_not_in_folder__lists_the_subfolders(gpt2_checkpoints, few_sentences, store):
    with pytest.raises(LayerscopeError, match=r"revisions: 'checkpoint-7' not in folder .* it has checkpoint-1000, "
                                              r"checkpoint-50, checkpoint-900"):
        extract_series(str(gpt2_checkpoints), few_sentences, revisions=["checkpoint-50", "checkpoint-7"], store=store)


@pytest.mark.parametrize("option, message", [("pooling", r"pooling='median' must be one of"),
                                             ("batch_size", r"batch_size=0 must be an integer >= 1")])
def test_extract_series__bad_option__named_before_any_work(option, message, gpt2_checkpoints, few_sentences, store):
    value = {"pooling": "median", "batch_size": 0}[option]
    with pytest.raises(LayerscopeError, match=message):
        extract_series(str(gpt2_checkpoints), few_sentences, store=store, **{option: value})
    assert not store.runs_dir.exists()


def test_extract_series__unknown_spec__says_what_a_series_is(few_sentences, store):
    with pytest.raises(LayerscopeError, match=r"model 'minilm' is not a checkpoint series: give a folder"):
        extract_series("minilm", few_sentences, store=store)


def test_load_model__digits_series_whole_or_unknown_step__points_to_the_series(tmp_path):
    import core

    for name in ("digits-mlp:series", "digits-mlp:series@step=5"):
        with pytest.raises(LayerscopeError, match=r"'digits-mlp:series' is a checkpoint series; extract it whole"):
            core.load_model(name, workspace=tmp_path)


def test_extract_series__checkpoint_tokenising_otherwise__names_the_input(tmp_path, few_sentences, store):
    from family_builders import minilm_tokenizer

    save_gpt2(tmp_path / "ckpt" / "step1", seed=0)
    later = save_gpt2(tmp_path / "ckpt" / "step2", seed=1)
    tokenizer = minilm_tokenizer()
    tokenizer.add_tokens(["the"])  # a new id for a word every sentence has
    tokenizer.save_pretrained(later)
    with pytest.raises(LayerscopeError, match=r"checkpoint 'step2''s tokenizer turns input \d+ \(.*\) into other "
                                              r"token ids than 'step1''s"):
        extract_series(str(tmp_path / "ckpt"), few_sentences, layers="transformer.h.1", store=store)
    assert list_series(store) == []
