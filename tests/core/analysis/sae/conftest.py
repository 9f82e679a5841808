"""Shared fixtures of the SAE tests: one torch thread, a real minilm tokens run, a tiny random Llama."""

from __future__ import annotations

import pytest
import torch

import core
from core.store import Store
from sae_helpers import LAYER


@pytest.fixture(scope="module", autouse=True)
def single_threaded(one_thread):
    """Every test here runs on one torch thread (see one_thread)."""


@pytest.fixture(scope="package")
def demo_tokens(tmp_path_factory, minilm):
    """A minilm tokens run of 200 demo sentences (about 4.5k tokens), one layer, and its store."""
    store = Store(tmp_path_factory.mktemp("sae_ws"))
    data = core.load_dataset("demo:sentences", limit=200)
    return core.extract(minilm, data, layers=[LAYER], pooling="tokens", store=store), store


@pytest.fixture(scope="package")
def tiny_llama(minilm):
    """A 2-block random Llama (32 wide) with minilm's tokenizer: a causal LM for the next-token loss."""
    import transformers

    from core.models import wrap_hf

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(minilm.tokenizer), hidden_size=32, num_attention_heads=4,
                                      num_hidden_layers=2, intermediate_size=64, num_key_value_heads=2)
    module = transformers.LlamaForCausalLM(config).eval()
    return wrap_hf("tiny-llama", module, minilm.tokenizer, "tiny llama", "random")
