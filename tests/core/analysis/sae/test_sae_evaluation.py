"""core.analysis.sae.evaluation: the next-token loss with an SAE spliced into a causal LM."""

from __future__ import annotations

import pytest

from core.analysis.sae import next_token_losses
from core.errors import LayerscopeError
from sae_helpers import LAYER, identity_sae


def test_next_token_losses__a_perfect_reconstruction_leaves_the_loss_unchanged(tiny_llama):
    texts = ["The cat sat on the mat.", "Rain is expected all week in the north."]
    losses = next_token_losses(identity_sae(32), tiny_llama, "model.layers.0", texts)
    assert losses["sae"] == pytest.approx(losses["clean"], abs=1e-5)
    assert abs(losses["zero"] - losses["clean"]) > 1e-3
    assert losses["n_texts"] == 2


def test_next_token_losses__refuses_an_encoder_and_a_wrong_width(minilm, tiny_llama):
    with pytest.raises(LayerscopeError, match="not a causal LM"):
        next_token_losses(identity_sae(384), minilm, LAYER, ["a b c"])
    with pytest.raises(LayerscopeError, match="SAE takes d_in=8"):
        next_token_losses(identity_sae(8), tiny_llama, "model.layers.0", ["a b c d"])


def test_next_token_losses__leaves_no_hook_on_the_shared_model(tiny_llama):
    def hooks():
        return {name: list(m._forward_hooks) for name, m in tiny_llama.module.named_modules()}

    before = hooks()
    next_token_losses(identity_sae(32), tiny_llama, "model.layers.0", ["The cat sat on the mat."])
    assert hooks() == before
    with pytest.raises(LayerscopeError, match="SAE takes d_in=8"):  # raised from inside the hook
        next_token_losses(identity_sae(8), tiny_llama, "model.layers.0", ["a b c d"])
    assert hooks() == before
