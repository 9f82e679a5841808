"""Shared fixtures of the logit-lens tests: small random causal LMs of three families, checks on a model.

The small models are real transformers classes (each with its own final-norm name) with
random weights and minilm's tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from core.models import wrap_hf


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


def _model_probs(loaded, ids: np.ndarray) -> torch.Tensor:
    """(T, V) the model's own next-token distribution (float64)."""
    with torch.inference_mode():
        logits = loaded.module(input_ids=torch.tensor([ids.tolist()])).logits[0]
    return torch.softmax(logits.double(), dim=-1)


def _no_hooks(module: torch.nn.Module) -> bool:
    """True when no forward hook of Layerscope's is left on any submodule.

    transformers installs its own output-capturing hooks, for good, the first time a model is
    called with output_hidden_states=True (as other tests do on the shared smollm2): not ours.
    """
    return not [hook for m in module.modules() for hook in m._forward_hooks.values()
                if not getattr(hook, "__module__", "").startswith("transformers.")]


@pytest.fixture(scope="module", params=["llama", "gpt_neox", "opt"])
def tiny_lm(request, minilm):
    module = _tiny_causal_lm(request.param, len(minilm.tokenizer)).eval()
    loaded = wrap_hf(f"tiny-{request.param}", module, minilm.tokenizer, f"tiny {request.param}", "random")
    return request.param, loaded


@pytest.fixture(scope="module")
def tiny_llama(minilm):
    module = _tiny_causal_lm("llama", len(minilm.tokenizer)).eval()
    return wrap_hf("tiny-llama", module, minilm.tokenizer, "tiny llama", "random")


@pytest.fixture()
def model_probs() -> Callable[..., torch.Tensor]:
    return _model_probs


@pytest.fixture()
def no_hooks() -> Callable[[torch.nn.Module], bool]:
    return _no_hooks
