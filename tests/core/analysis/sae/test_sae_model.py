"""core.analysis.sae.model: the TopK and ReLU autoencoders encode, decode and fold an input scale."""

from __future__ import annotations

import torch

from sae_helpers import random_sae


def test_topk__keeps_exactly_k_active_features():
    sae = random_sae(d_in=16, d_sae=64, k=5)
    with torch.no_grad():
        sae.b_enc.fill_(100.0)  # every pre-activation positive: the ReLU after TopK removes none
    acts = sae.encode(torch.randn(50, 16))
    assert ((acts > 0).sum(-1) == 5).all()


def test_topk__never_more_than_k_and_keeps_the_largest():
    sae = random_sae(d_in=16, d_sae=64, k=5)
    x = torch.randn(50, 16)
    acts = sae.encode(x)
    pre = sae.pre_activations(x)
    assert ((acts > 0).sum(-1) <= 5).all()
    top = pre.topk(5, dim=-1)
    kept = acts.gather(-1, top.indices)
    assert torch.allclose(kept, torch.relu(top.values))


def test_standard__is_relu_of_the_encoder():
    sae = random_sae(architecture="standard")
    x = torch.randn(10, 8)
    expected = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert torch.allclose(sae.encode(x), expected)
    assert torch.allclose(sae(x), expected @ sae.W_dec + sae.b_dec)


def test_fold_scaling_factor__sae_on_scaled_inputs_equals_folded_sae_on_raw():
    sae = random_sae(architecture="standard")
    x = torch.randn(20, 8)
    scaled_out = sae(x * 3.0) / 3.0
    sae.fold_scaling_factor(3.0)
    assert torch.allclose(sae(x), scaled_out, atol=1e-5)
