"""core.analysis.features.examples and search: context windows around a latent's tokens, and finding latents."""

from __future__ import annotations

import pytest

from core.analysis.features import feature_examples, feature_stats, readable_tokens, search_features
from features_helpers import LAYER, random_sae


def test_feature_examples__window_is_centred_on_the_top_token(labelled_run):
    acts, _ = labelled_run
    sae = random_sae()
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
    sae = random_sae()
    stats = feature_stats(sae, acts, LAYER, top_k=5)
    f = int(stats.order("density")[0])
    token = readable_tokens(acts.tokens)[stats.top_rows[f][0]].strip()
    found = search_features(stats, acts, token.upper())
    assert f in found
    assert len(search_features(stats, acts, "zzzz-not-there")) == 0
    assert len(search_features(stats, acts, "")) == sae.d_sae
