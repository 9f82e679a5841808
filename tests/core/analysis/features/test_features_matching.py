"""core.analysis.features.matching: pairing the latents of two SAEs over the same inputs.

Matching is checked on an SAE against itself and against a copy with its latents permuted, and
the "lan2024" conventions against a port of Lan et al.'s code.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import core
from core.analysis.features import match_features
from core.analysis.sae import SAEConfig, SparseAutoencoder, token_rows, train_sae_on_run
from core.analysis.similarity import rsa
from core.errors import LayerscopeError
from core.store import Store
from features_helpers import LAYER, all_acts, random_sae


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


# ----- Lan et al. 2024's conventions ----------------------------------------------------------------
# A port of wlg1/univ_feat_geom run_pipeline/correlation_fns.py (normalize_byChunks, batched_correlation; on
# the CPU, in one chunk) and of the pairing in run_pipeline/run_expm_fns.py run_expm (manyA_1B_bool=True,
# oneToOne_bool=True; its keyword filter is undone by the for-else that follows it, so it is left out).
def _lan_normalize(actv_tensor):
    mean_A = actv_tensor.mean(dim=0, keepdim=True)
    std_A = actv_tensor.std(dim=0, keepdim=True)
    return (actv_tensor - mean_A) / (std_A + 1e-8)


def _lan_batched_correlation(reshaped_activations_A, reshaped_activations_B, batch_size=100):
    normalized_A = _lan_normalize(reshaped_activations_A)
    normalized_B = _lan_normalize(reshaped_activations_B)
    max_values, max_indices = [], []
    for start in range(0, normalized_B.shape[1], batch_size):
        end = min(start + batch_size, normalized_B.shape[1])
        batch_corr_matrix = torch.matmul(normalized_A.t(), normalized_B[:, start:end]) / normalized_A.shape[0]
        max_val, max_idx = batch_corr_matrix.max(dim=0)
        max_values.append(max_val)
        max_indices.append(max_idx)
    return torch.cat(max_indices).numpy(), torch.cat(max_values).numpy()


def _lan_pairs(max_corr_inds, max_corr_vals):
    filt_corr_ind_A, filt_corr_ind_B = max_corr_inds, list(range(len(max_corr_inds)))
    sorted_feat_counts = Counter(max_corr_inds).most_common()
    kept_modA_feats = [feat_ID for feat_ID, count in sorted_feat_counts if count == 1]
    oneToOne_A, oneToOne_B, seen = [], [], set()
    for ind_A, ind_B in zip(filt_corr_ind_A, filt_corr_ind_B):
        if ind_A in kept_modA_feats:
            oneToOne_A.append(ind_A)
            oneToOne_B.append(ind_B)
        elif ind_A not in seen:
            seen.add(ind_A)
            oneToOne_A.append(ind_A)
            oneToOne_B.append(ind_B)
    kept = [(a, b, max_corr_vals[b]) for a, b in zip(oneToOne_A, oneToOne_B) if max_corr_vals[b] > 0.1]
    return [a for a, _, _ in kept], [b for _, b, _ in kept], [v for _, _, v in kept]


def _kill(sae: SparseAutoencoder, latents) -> None:
    """Latents that never fire: their pre-activation is far below every other."""
    with torch.no_grad():
        sae.W_enc[:, latents] = 0.0
        sae.b_enc[latents] = -1e3


def _related_saes():
    """A (96 latents, 4 dead) and B: 60 noisy copies of A's latents, 26 unrelated, then 10 dead ones."""
    a = random_sae(d_sae=96, k=32, seed=0)
    _kill(a, [7, 30, 31, 64])
    b = random_sae(d_sae=96, k=32, seed=1)
    source = np.random.default_rng(0).permutation(96)[:60]
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        b.W_enc[:, :60] = a.W_enc[:, source] + 0.03 * torch.randn(384, 60, generator=g)
        b.W_dec[:60] = a.W_dec[source] + 0.02 * torch.randn(60, 384, generator=g)
    _kill(b, list(range(86, 96)))  # at the end, so that no dead B latent comes before a live one in their order
    return a, b


def test_match_features__lan2024_follows_their_code_where_the_conventions_differ(labelled_run):
    acts, _ = labelled_run
    sae_a, sae_b = _related_saes()
    ours = match_features(sae_a, acts, LAYER, sae_b, acts, LAYER, variant="lan2024", n_random=5)
    default = match_features(sae_a, acts, LAYER, sae_b, acts, LAYER, n_random=5)
    rows = token_rows(acts, exclude_first_token=True)
    A, B = torch.from_numpy(all_acts(sae_a, acts, rows)), torch.from_numpy(all_acts(sae_b, acts, rows))
    n = A.shape[0]
    inds, vals = _lan_batched_correlation(A, B)
    live = ours.partner >= 0
    assert live.sum() == 86 and ours.n_alive_a == 92
    assert (ours.partner[live] == inds[live]).all()
    np.testing.assert_allclose(ours.correlation, vals, atol=1e-5)  # dead latents of B: r = 0 in both
    assert ours.mean_paired == pytest.approx(float(np.mean(vals)), abs=1e-5)  # their mean_actv_corr
    pairs_a, pairs_b, pair_vals = _lan_pairs(inds, vals)
    assert ours.n_pairs == len(pairs_b) > 20
    assert ours.mean_pairs == pytest.approx(float(np.mean(pair_vals)), abs=1e-5)  # their mean_actv_corr_filt
    W_a, W_b = (sae.W_dec.detach().numpy().astype(np.float64) for sae in (sae_a, sae_b))
    assert ours.rsa_paired == pytest.approx(rsa(W_a[pairs_a], W_b[pairs_b]), abs=1e-9)
    # the random baseline pairs each live B latent with another one's partner (shuffled pairs)
    corr = (_lan_normalize(A).T @ _lan_normalize(B) / n).numpy()
    partners_of_live = inds[live]
    for i in np.flatnonzero(live):
        assert np.isclose(corr[partners_of_live, i], ours.random_correlation[i], atol=1e-5).any()
    assert abs(ours.rsa_random) < 0.3 < ours.rsa_paired
    # where the conventions differ: ddof=1 scales r by (n - 1) / n, and dead latents pull the mean down
    same = live & (default.partner == ours.partner)
    np.testing.assert_allclose(ours.correlation[same], default.correlation[same] * (n - 1) / n, atol=1e-5)
    assert ours.mean_paired == pytest.approx(default.mean_paired * 86 / 96 * (n - 1) / n, abs=0.02)
    assert default.mean_paired - ours.mean_paired > 0.03
    assert (ours.params["variant"], default.params["variant"]) == ("lan2024", "layerscope")


def test_match_features__an_unknown_variant_is_refused(labelled_run):
    acts, _ = labelled_run
    sae = random_sae()
    with pytest.raises(LayerscopeError, match="variant='lan' must be one of: layerscope, lan2024"):
        match_features(sae, acts, LAYER, sae, acts, LAYER, variant="lan")
