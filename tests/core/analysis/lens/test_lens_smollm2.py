"""The logit lens on the bundled SmolLM2 with its real weights."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.lens import logit_lens

TEXT = "The capital of France is Paris, and the capital of Germany is"


@pytest.mark.slow
def test_logit_lens__smollm2_last_layer_is_the_models_output(smollm2, model_probs, no_hooks):
    result = logit_lens(smollm2, TEXT, top_k=5)
    assert result.layer_names == tuple(smollm2.default_layers())
    assert len(result.layer_names) == 31  # embeddings + 30 blocks
    probs = model_probs(smollm2, result.token_ids)
    top, ids = probs.topk(5, dim=-1)
    np.testing.assert_allclose(result.top_probs[-1], top.numpy(), atol=1e-5)
    np.testing.assert_array_equal(result.top_ids[-1], ids.numpy())
    assert np.abs(result.kl_to_final[-1]).max() < 1e-5
    assert result.mean_kl[-1] < result.mean_kl[len(result.mean_kl) // 2] < result.mean_kl[0]
    assert "".join(result.tokens) == TEXT
    france = result.tokens.index(" France")
    assert result.final_top_tokens[france + 1] == " Paris"  # after "... France is"
    assert result.final_top_tokens[-1] == " Berlin"
    assert no_hooks(smollm2.module)
