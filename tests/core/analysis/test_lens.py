"""core.analysis.lens: the logit lens reads each layer through the model's own head.

Fast tests use small randomly initialised Hugging Face causal LMs of three families (real
transformers classes with their own final-norm names) and minilm's tokenizer; slow tests
use the bundled SmolLM2 with its real weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.lens import LensResult, find_final_norm, find_unembedding, logit_lens
from core.errors import LayerscopeError
from core.models import wrap_hf

TEXT = "The capital of France is Paris, and the capital of Germany is"


def _tiny_causal_lm(family: str, vocab_size: int):
    """A 2-block causal LM of `family` with random weights (seeded)."""
    import transformers

    torch.manual_seed(0)
    common = {"vocab_size": vocab_size, "hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2}
    if family == "llama":
        config = transformers.LlamaConfig(**common, intermediate_size=64, num_key_value_heads=2)
        return transformers.LlamaForCausalLM(config)
    if family == "gpt_neox":
        config = transformers.GPTNeoXConfig(**common, intermediate_size=64)
        return transformers.GPTNeoXForCausalLM(config)
    if family == "opt":
        config = transformers.OPTConfig(
            vocab_size=vocab_size, hidden_size=32, num_attention_heads=4, num_hidden_layers=2, ffn_dim=64,
            word_embed_proj_dim=32, max_position_embeddings=128,
        )
        return transformers.OPTForCausalLM(config)
    raise AssertionError(family)


FAMILIES = {"llama": "model.norm", "gpt_neox": "gpt_neox.final_layer_norm", "opt": "model.decoder.final_layer_norm"}


@pytest.fixture(scope="module", params=list(FAMILIES))
def tiny_lm(request, minilm):
    module = _tiny_causal_lm(request.param, len(minilm.tokenizer)).eval()
    loaded = wrap_hf(f"tiny-{request.param}", module, minilm.tokenizer, f"tiny {request.param}", "random")
    return request.param, loaded


@pytest.fixture(scope="module")
def tiny_llama(minilm):
    module = _tiny_causal_lm("llama", len(minilm.tokenizer)).eval()
    return wrap_hf("tiny-llama", module, minilm.tokenizer, "tiny llama", "random")


def _model_probs(loaded, ids: np.ndarray) -> torch.Tensor:
    """(T, V) the model's own next-token distribution (float64)."""
    with torch.inference_mode():
        logits = loaded.module(input_ids=torch.tensor([ids.tolist()])).logits[0]
    return torch.softmax(logits.double(), dim=-1)


def _no_hooks(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks for m in module.modules())


# ----- any Hugging Face causal LM ----------------------------------------------------------
def test_find_final_norm__finds_each_family_by_its_own_name(tiny_lm):
    family, loaded = tiny_lm
    path, norm = find_final_norm(loaded.module)
    assert path == FAMILIES[family]
    assert isinstance(norm, torch.nn.Module)
    head_path, head = find_unembedding(loaded.module)
    assert head is loaded.module.get_output_embeddings()
    assert head_path in ("lm_head", "embed_out")


def test_logit_lens__last_block_equals_model_output(tiny_lm):
    _, loaded = tiny_lm
    result = logit_lens(loaded, TEXT, top_k=5)
    probs = _model_probs(loaded, result.token_ids)
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


def test_logit_lens__removes_hooks_also_after_an_error(tiny_llama):
    logit_lens(tiny_llama, TEXT)
    assert _no_hooks(tiny_llama.module)
    with pytest.raises(LayerscopeError, match="residual-stream"):
        logit_lens(tiny_llama, TEXT, layers=["model.layers.0.mlp.up_proj"])  # width 64, not 32
    assert _no_hooks(tiny_llama.module)


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


# ----- SmolLM2, real weights -----------------------------------------------------------------
@pytest.mark.slow
def test_logit_lens__smollm2_last_layer_is_the_models_output(smollm2):
    result = logit_lens(smollm2, TEXT, top_k=5)
    assert result.layer_names == tuple(smollm2.default_layers())
    assert len(result.layer_names) == 31  # embeddings + 30 blocks
    probs = _model_probs(smollm2, result.token_ids)
    top, ids = probs.topk(5, dim=-1)
    np.testing.assert_allclose(result.top_probs[-1], top.numpy(), atol=1e-5)
    np.testing.assert_array_equal(result.top_ids[-1], ids.numpy())
    assert np.abs(result.kl_to_final[-1]).max() < 1e-5
    assert result.mean_kl[-1] < result.mean_kl[len(result.mean_kl) // 2] < result.mean_kl[0]
    assert "".join(result.tokens) == TEXT
    france = result.tokens.index(" France")
    assert result.final_top_tokens[france + 1] == " Paris"  # after "... France is"
    assert result.final_top_tokens[-1] == " Berlin"
    assert _no_hooks(smollm2.module)
