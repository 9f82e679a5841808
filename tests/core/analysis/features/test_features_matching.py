"""core.analysis.features.matching: pairing the latents of two SAEs over the same inputs.

Matching is checked on an SAE against itself and against a copy with its latents permuted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from core.analysis.features import match_features
from core.analysis.sae import SAEConfig, SparseAutoencoder, train_sae_on_run
from core.errors import LayerscopeError
from core.store import Store
from features_helpers import LAYER, random_sae


def test_match_features__an_sae_matches_itself_perfectly(labelled_run):
    acts, _ = labelled_run
    sae = random_sae(d_sae=96, k=12)
    result = match_features(sae, acts, LAYER, sae, acts, LAYER, n_random=5)
    alive = result.partner >= 0
    assert np.isnan(result.svcca_paired) and "SVCCA" in result.reasons["svcca"]  # 96 pairs in 384-d: undefined
    assert result.level == "tokens" and alive.sum() == result.n_alive_b
    assert result.mean_paired == pytest.approx(1.0, abs=1e-5)
    assert abs(result.mean_random) < 0.2 < result.mean_paired
    assert np.allclose(result.correlation[alive], 1.0, atol=1e-5)


def test_match_features__recovers_a_permutation_of_the_latents(labelled_run):
    acts, _ = labelled_run
    sae = random_sae(d_sae=1536, k=48)  # SVCCA of decoder directions needs many more pairs than d = 384
    perm = np.random.default_rng(0).permutation(1536)
    permuted = SparseAutoencoder(384, 1536, architecture="topk", k=48)
    with torch.no_grad():
        permuted.W_enc.copy_(sae.W_enc[:, perm])
        permuted.b_enc.copy_(sae.b_enc[perm])
        permuted.W_dec.copy_(sae.W_dec[perm])
        permuted.b_dec.copy_(sae.b_dec)
    result = match_features(sae, acts, LAYER, permuted, acts, LAYER)
    alive = result.partner >= 0
    assert np.allclose(result.correlation[alive], 1.0, atol=1e-5)
    # rare latents that fire on the very same tokens tie at r = 1; all others find their own copy
    assert (result.partner[alive] == perm[alive]).mean() > 0.9
    assert result.svcca_paired > 0.98 and result.svcca_paired > result.svcca_random + 0.05, result
    assert result.rsa_paired > 0.95 and abs(result.rsa_random) < 0.2, result


def test_match_features__two_seeds_share_more_than_random(labelled_run):
    acts, store = labelled_run
    config = {"expansion": 1.0, "k": 8, "batch_size": 64, "training_tokens": 64 * 40, "lr": 2e-3, "dead_window": 500}
    a = train_sae_on_run(acts, LAYER, SAEConfig(**config, seed=0), store=store)
    b = train_sae_on_run(acts, LAYER, SAEConfig(**config, seed=1), store=store)
    result = match_features(a.sae, acts, LAYER, b.sae, acts, LAYER)
    assert result.mean_paired > result.mean_random + 0.3
    table = result.table()
    assert (np.diff(table["correlation"].to_numpy()) <= 0).all()


def test_match_features__different_inputs_are_refused(labelled_run, minilm, few_sentences, tmp_path):
    acts, _ = labelled_run
    other = core.extract(minilm, few_sentences, layers=[LAYER], pooling="tokens", store=Store(tmp_path / "ws"))
    sae = random_sae()
    with pytest.raises(LayerscopeError, match="not on the same inputs"):
        match_features(sae, acts, LAYER, sae, other, LAYER)
