"""core.analysis.lens: the logit lens reads each layer through the model's own head, on any HF causal LM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.lens import LensResult, find_final_norm, find_unembedding, logit_lens
from core.errors import LayerscopeError

TEXT = "The capital of France is Paris, and the capital of Germany is"
FAMILIES = {"llama": "model.norm", "gpt_neox": "gpt_neox.final_layer_norm", "opt": "model.decoder.final_layer_norm"}


def test_find_final_norm__finds_each_family_by_its_own_name(tiny_lm):
    family, loaded = tiny_lm
    path, norm = find_final_norm(loaded.module)
    assert path == FAMILIES[family]
    assert isinstance(norm, torch.nn.Module)
    head_path, head = find_unembedding(loaded.module)
    assert head is loaded.module.get_output_embeddings()
    assert head_path in ("lm_head", "embed_out")


def test_logit_lens__last_block_equals_model_output(tiny_lm, model_probs):
    _, loaded = tiny_lm
    result = logit_lens(loaded, TEXT, top_k=5)
    probs = model_probs(loaded, result.token_ids)
    top, ids = probs.topk(5, dim=-1)
    np.testing.assert_allclose(result.top_probs[-1], top.numpy(), atol=1e-6)
    np.testing.assert_array_equal(result.top_ids[-1], ids.numpy())
    assert np.abs(result.kl_to_final[-1]).max() < 1e-6
    assert result.kl_to_final[:-1].max() > 1e-6, "earlier layers should differ from the output"


def test_logit_lens__shapes_and_invariants(tiny_llama):
    result = logit_lens(tiny_llama, TEXT, top_k=3)
    assert isinstance(result, LensResult)
    layers = tuple(tiny_llama.default_layers())
    T = len(result.token_ids)
    assert result.layer_names == layers
    assert len(result.tokens) == T == result.n_positions
    assert result.top_tokens.shape == result.top_ids.shape == result.top_probs.shape == (len(layers), T, 3)
    assert result.kl_to_final.shape == (len(layers), T)
    assert np.all(np.diff(result.top_probs, axis=-1) <= 1e-12), "top tokens come best first"
    assert np.all((result.top_probs >= 0) & (result.top_probs <= 1))
    assert np.all(result.kl_to_final >= 0)
    np.testing.assert_allclose(result.mean_kl, result.kl_to_final.mean(axis=1))
    decoded = [tiny_llama.tokenizer.decode([int(i)]) for i in result.top_ids[0, 0]]
    assert list(result.top_tokens[0, 0]) == decoded
    assert result.final_top_tokens == tuple(result.top_tokens[-1, :, 0])
    assert result.params["final_norm"] == "model.norm" and result.params["unembedding"] == "lm_head"


def test_logit_lens__chosen_layers_in_model_order(tiny_llama):
    result = logit_lens(tiny_llama, TEXT, layers=["model.layers.1"], top_k=2)
    assert result.layer_names == ("model.layers.1",)
    assert np.abs(result.kl_to_final).max() < 1e-6  # the last block is the output


def test_logit_lens__removes_hooks_also_after_an_error(tiny_llama, no_hooks):
    logit_lens(tiny_llama, TEXT)
    assert no_hooks(tiny_llama.module)
    with pytest.raises(LayerscopeError, match="residual-stream"):
        logit_lens(tiny_llama, TEXT, layers=["model.layers.0.mlp.up_proj"])  # width 64, not 32
    assert no_hooks(tiny_llama.module)


def test_logit_lens__truncates_long_text_and_says_so(tiny_llama):
    result = logit_lens(tiny_llama, TEXT, max_length=4)
    assert result.n_positions == 4 and result.params["truncated"] is True
    assert logit_lens(tiny_llama, TEXT).params["truncated"] is False


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True, 10**9])
def test_logit_lens__rejects_bad_top_k(tiny_llama, top_k):
    with pytest.raises(LayerscopeError, match="top_k"):
        logit_lens(tiny_llama, TEXT, top_k=top_k)


@pytest.mark.parametrize("text", ["", "   "])
def test_logit_lens__rejects_empty_text(tiny_llama, text):
    with pytest.raises(LayerscopeError, match="empty"):
        logit_lens(tiny_llama, text)


def test_logit_lens__encoder_gets_a_clear_message(minilm):
    with pytest.raises(LayerscopeError, match="minilm.*not a causal language model.*smollm2"):
        logit_lens(minilm, TEXT)


def test_logit_lens__rejects_what_is_not_a_loaded_model(minilm):
    with pytest.raises(LayerscopeError, match="LoadedModel"):
        logit_lens(minilm.module, TEXT)
