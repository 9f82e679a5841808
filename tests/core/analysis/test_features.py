"""core.analysis.features: per-latent statistics in one pass, examples, logit effects and matching.

Statistics are checked against brute force (encode every token, then count) on a real minilm
tokens run with a random-weight SAE, so no training is needed; matching is checked on an
SAE against itself and against a copy with its latents permuted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import core
from core.analysis.features import (
    feature_examples,
    feature_stats,
    feature_stats_cached,
    logit_effects,
    match_features,
    readable_tokens,
    search_features,
    stored_feature_stats,
)
from core.analysis.sae import SAEConfig, SparseAutoencoder, save_saelens, token_rows, train_sae_on_run
from core.errors import LayerscopeError
from core.store import Store

LAYER = "encoder.layer.2"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small matrices are faster on one thread; with two on a busy 2-core machine they are much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory, minilm):
    """A minilm tokens run of 60 short texts with a categorical and a numeric (60 distinct values) label."""
    root = tmp_path_factory.mktemp("features_ws")
    words = ["rain", "sun", "snow", "wind", "storm", "cloud"]
    rows = [{"text": f"The {words[i % 6]} came back on day {i} and stayed {i % 4 + 1} hours.",
             "weather": words[i % 6], "score": float(i) * 0.37 - 5.0} for i in range(60)]
    path = tmp_path_factory.mktemp("data") / "weather.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    data = core.load_dataset(str(path), text_column="text", label_columns=["weather", "score"])
    store = Store(root)
    return core.extract(minilm, data, layers=[LAYER], pooling="tokens", store=store), store


def _random_sae(d_in=384, d_sae=96, k=6, seed=0) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(d_in, d_sae, architecture="topk", k=k)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in) / d_in**0.5)
        sae.b_dec.zero_()
        sae.b_enc.zero_()
    return sae.eval()


def _all_acts(sae, acts, rows) -> np.ndarray:
    with torch.no_grad():
        return sae.encode(torch.from_numpy(np.asarray(acts[LAYER][rows], dtype=np.float32))).numpy()


def test_feature_stats__matches_brute_force(labelled_run):
    acts, _ = labelled_run
    sae = _random_sae()
    stats = feature_stats(sae, acts, LAYER, top_k=5, n_samples=8)
    rows = token_rows(acts, exclude_first_token=True)
    A = _all_acts(sae, acts, rows)  # (n, F)
    fires = A > 0
    assert stats.n_tokens == rows.size
    np.testing.assert_allclose(stats.density, fires.mean(0))
    np.testing.assert_allclose(stats.max_activation, A.max(0), rtol=1e-6)
    with np.errstate(invalid="ignore"):
        mean_active = np.where(fires.any(0), A.sum(0) / fires.sum(0), 0.0)
    np.testing.assert_allclose(stats.mean_activation, mean_active, rtol=1e-5)
    expected_top = -np.sort(-A, axis=0)[:5].T
    np.testing.assert_allclose(np.where(stats.top_rows >= 0, stats.top_values, 0.0),
                               np.where(expected_top > 0, expected_top, 0.0), rtol=1e-6)
    position = {r: i for i, r in enumerate(rows)}
    for f in range(0, sae.d_sae, 7):  # rows point at the tokens with those activations
        for r, v in zip(stats.top_rows[f], stats.top_values[f]):
            if r >= 0:
                assert A[position[r], f] == pytest.approx(v, rel=1e-6)
    assert np.array_equal(stats.hist_counts.sum(1), fires.sum(0))


def test_feature_stats__samples_are_firing_tokens_without_repeats(labelled_run):
    acts, _ = labelled_run
    sae = _random_sae()
    stats = feature_stats(sae, acts, LAYER, top_k=3, n_samples=8)
    rows = token_rows(acts, exclude_first_token=True)
    A = _all_acts(sae, acts, rows)
    position = {r: i for i, r in enumerate(rows)}
    for f in range(sae.d_sae):
        kept = stats.sample_rows[f][stats.sample_rows[f] >= 0]
        assert kept.size == min(8, int((A[:, f] > 0).sum()))
        assert len(set(kept.tolist())) == kept.size
        for r, v in zip(kept, stats.sample_values[f][stats.sample_rows[f] >= 0]):
            assert A[position[r], f] == pytest.approx(v, rel=1e-6) and v > 0


def test_feature_stats__label_association_counts_and_correlation(labelled_run):
    acts, _ = labelled_run
    sae = _random_sae()
    stats = feature_stats(sae, acts, LAYER)
    rows = token_rows(acts, exclude_first_token=True)
    A = _all_acts(sae, acts, rows)
    owner = np.searchsorted(acts.offsets, rows, side="right") - 1
    weather = acts.labels("weather")[owner]
    assoc = stats.labels["weather"]
    assert assoc.kind == "categorical" and assoc.values == tuple(sorted(set(weather)))
    for v, value in enumerate(assoc.values):
        assert assoc.tokens_per_value[v] == int((weather == value).sum())
        assert np.array_equal(assoc.fires_per_value[:, v], (A[weather == value] > 0).sum(0))
    score = assoc.score()
    assert score.shape == (sae.d_sae,) and (score >= 0).all()
    numeric = stats.labels["score"]
    assert numeric.kind == "numeric"
    y = acts.labels("score")[owner].astype(float)
    for f in range(0, sae.d_sae, 11):
        if A[:, f].std() > 0:
            assert numeric.correlation[f] == pytest.approx(np.corrcoef(A[:, f], y)[0, 1], abs=1e-6)


def test_label_association__mutual_information_is_one_bit_for_a_perfect_indicator():
    from core.analysis.features import LabelAssociation

    assoc = LabelAssociation("x", "categorical", ("a", "b"), np.array([50, 50]), np.array([[50, 0], [25, 25]]))
    score = assoc.score()
    assert score[0] == pytest.approx(1.0) and score[1] == pytest.approx(0.0, abs=1e-12)
    assert assoc.top_values(0)[0]["value"] == "a" and assoc.top_values(0)[0]["lift"] == pytest.approx(2.0)


def test_feature_stats__order_and_errors(labelled_run):
    acts, _ = labelled_run
    stats = feature_stats(_random_sae(), acts, LAYER)
    order = stats.order("density")
    assert (np.diff(stats.density[order]) <= 0).all()
    assert (np.diff(stats.max_activation[stats.order("max_activation")]) <= 0).all()
    assert stats.order("label_association", "weather").shape == (96,)
    with pytest.raises(LayerscopeError, match="label column 'nope'"):
        stats.order("label_association", "nope")
    with pytest.raises(LayerscopeError, match="d_in=10"):
        feature_stats(_random_sae(d_in=10), acts, LAYER)


def test_feature_stats_cached__second_call_reads_the_store(labelled_run, tmp_path):
    acts, store = labelled_run
    entry = train_sae_on_run(acts, LAYER, SAEConfig(expansion=1.0, k=8, batch_size=64, training_tokens=64 * 10,
                                                    dead_window=500), store=store)
    assert stored_feature_stats(entry, store) is None
    calls = []
    first = feature_stats_cached(entry, acts, store, progress=lambda d, t, m: calls.append(d))
    assert calls and calls[-1] == first.n_tokens
    again = feature_stats_cached(entry, acts, store, progress=lambda d, t, m: calls.append("again"))
    assert "again" not in calls
    assert np.array_equal(again.top_rows, first.top_rows)
    assert again.labels["weather"].values == first.labels["weather"].values
    np.testing.assert_array_equal(again.labels["score"].correlation, first.labels["score"].correlation)


def test_feature_examples__window_is_centred_on_the_top_token(labelled_run):
    acts, _ = labelled_run
    sae = _random_sae()
    stats = feature_stats(sae, acts, LAYER, top_k=3)
    f = int(stats.order("density")[0])
    examples = feature_examples(sae, acts, LAYER, f, stats.top_rows[f], window=3)
    assert len(examples) == 3
    for ex, value in zip(examples, stats.top_values[f]):
        assert ex.activations[ex.focus] == pytest.approx(ex.activation) == pytest.approx(float(value), rel=1e-5)
        assert len(ex.tokens) == len(ex.activations) <= 7
        assert ex.tokens[ex.focus].strip() == readable_tokens(acts.tokens)[ex.row].strip()
        assert ex.labels["weather"] in ex.text.lower()


def test_readable_tokens__bpe_marks_and_wordpieces():
    assert readable_tokens(["Some", "one", "Ġstole", "Ċ"]) == ["Some", "one", " stole", "\n"]
    assert readable_tokens(["[CLS]", "rain", "##ing", "."]) == ["[CLS]", " rain", "ing", " ."]


def test_search_features__finds_latents_by_their_top_token(labelled_run):
    acts, _ = labelled_run
    sae = _random_sae()
    stats = feature_stats(sae, acts, LAYER, top_k=5)
    f = int(stats.order("density")[0])
    token = readable_tokens(acts.tokens)[stats.top_rows[f][0]].strip()
    found = search_features(stats, acts, token.upper())
    assert f in found
    assert len(search_features(stats, acts, "zzzz-not-there")) == 0
    assert len(search_features(stats, acts, "")) == sae.d_sae


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
    sae = _random_sae(d_in=32, d_sae=20, k=4)
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
        logit_effects(_random_sae(), minilm)


# ----- matching ------------------------------------------------------------------------------------
def test_match_features__an_sae_matches_itself_perfectly(labelled_run):
    acts, _ = labelled_run
    sae = _random_sae(d_sae=96, k=12)
    result = match_features(sae, acts, LAYER, sae, acts, LAYER, n_random=5)
    alive = result.partner >= 0
    assert np.isnan(result.svcca_paired) and "SVCCA" in result.reasons["svcca"]  # 96 pairs in 384-d: undefined
    assert result.level == "tokens" and alive.sum() == result.n_alive_b
    assert result.mean_paired == pytest.approx(1.0, abs=1e-5)
    assert abs(result.mean_random) < 0.2 < result.mean_paired
    assert np.allclose(result.correlation[alive], 1.0, atol=1e-5)


def test_match_features__recovers_a_permutation_of_the_latents(labelled_run):
    acts, _ = labelled_run
    sae = _random_sae(d_sae=1536, k=48)  # SVCCA of decoder directions needs many more pairs than d = 384
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
    sae = _random_sae()
    with pytest.raises(LayerscopeError, match="not on the same inputs"):
        match_features(sae, acts, LAYER, sae, other, LAYER)


def test_saved_sae_gives_the_same_statistics(labelled_run, tmp_path):
    from core.analysis.sae import load_saelens

    acts, _ = labelled_run
    sae = _random_sae()
    loaded = load_saelens(save_saelens(sae, tmp_path / "sae"))
    a, b = feature_stats(sae, acts, LAYER), feature_stats(loaded, acts, LAYER)
    assert np.array_equal(a.top_rows, b.top_rows) and np.array_equal(a.hist_counts, b.hist_counts)
