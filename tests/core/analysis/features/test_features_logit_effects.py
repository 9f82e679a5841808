"""core.analysis.features.logit_effects: decoder directions through a causal LM's norm gain and unembedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.features import logit_effects
from core.errors import LayerscopeError
from features_helpers import random_sae


def test_logit_effects__equal_brute_force_through_the_norm_gain(minilm):
    import transformers

    from core.models import wrap_hf

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(minilm.tokenizer), hidden_size=32, num_attention_heads=4,
                                      num_hidden_layers=2, intermediate_size=64, num_key_value_heads=2)
    module = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        module.model.norm.weight.uniform_(0.5, 2.0)
    model = wrap_hf("tiny-llama", module, minilm.tokenizer, "tiny llama", "random")
    sae = random_sae(d_in=32, d_sae=20, k=4)
    effects = logit_effects(sae, model, top_k=5, block=7)
    logits = (sae.W_dec * module.model.norm.weight) @ module.lm_head.weight.T  # (F, V)
    expected = logits.topk(5, dim=1)
    np.testing.assert_allclose(effects.promoted_values, expected.values.detach().numpy(), rtol=1e-5)
    np.testing.assert_array_equal(effects.promoted_ids, expected.indices.numpy())
    lowest = logits.topk(5, dim=1, largest=False)
    np.testing.assert_allclose(effects.suppressed_values, lowest.values.detach().numpy(), rtol=1e-5)
    card = effects.for_feature(3)
    assert card["promoted"][0][0] == minilm.tokenizer.decode([int(expected.indices[3, 0])])
    with pytest.raises(LayerscopeError, match="not a causal LM"):
        logit_effects(random_sae(), minilm)
