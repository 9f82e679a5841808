"""core.analysis.features.stats and labels: per-latent statistics in one pass, checked against brute force.

Statistics are checked against brute force (encode every token, then count) on a real minilm
tokens run with a random-weight SAE, so no training is needed.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.features import feature_stats
from core.analysis.sae import save_saelens, token_rows
from core.errors import LayerscopeError
from features_helpers import LAYER, all_acts, random_sae


def test_feature_stats__matches_brute_force(labelled_run):
    acts, _ = labelled_run
    sae = random_sae()
    stats = feature_stats(sae, acts, LAYER, top_k=5, n_samples=8)
    rows = token_rows(acts, exclude_first_token=True)
    A = all_acts(sae, acts, rows)  # (n, F)
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
    sae = random_sae()
    stats = feature_stats(sae, acts, LAYER, top_k=3, n_samples=8)
    rows = token_rows(acts, exclude_first_token=True)
    A = all_acts(sae, acts, rows)
    position = {r: i for i, r in enumerate(rows)}
    for f in range(sae.d_sae):
        kept = stats.sample_rows[f][stats.sample_rows[f] >= 0]
        assert kept.size == min(8, int((A[:, f] > 0).sum()))
        assert len(set(kept.tolist())) == kept.size
        for r, v in zip(kept, stats.sample_values[f][stats.sample_rows[f] >= 0]):
            assert A[position[r], f] == pytest.approx(v, rel=1e-6) and v > 0


def test_feature_stats__label_association_counts_and_correlation(labelled_run):
    acts, _ = labelled_run
    sae = random_sae()
    stats = feature_stats(sae, acts, LAYER)
    rows = token_rows(acts, exclude_first_token=True)
    A = all_acts(sae, acts, rows)
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
    stats = feature_stats(random_sae(), acts, LAYER)
    order = stats.order("density")
    assert (np.diff(stats.density[order]) <= 0).all()
    assert (np.diff(stats.max_activation[stats.order("max_activation")]) <= 0).all()
    assert stats.order("label_association", "weather").shape == (96,)
    with pytest.raises(LayerscopeError, match="label column 'nope'"):
        stats.order("label_association", "nope")
    with pytest.raises(LayerscopeError, match="d_in=10"):
        feature_stats(random_sae(d_in=10), acts, LAYER)


def test_saved_sae_gives_the_same_statistics(labelled_run, tmp_path):
    from core.analysis.sae import load_saelens

    acts, _ = labelled_run
    sae = random_sae()
    loaded = load_saelens(save_saelens(sae, tmp_path / "sae"))
    a, b = feature_stats(sae, acts, LAYER), feature_stats(loaded, acts, LAYER)
    assert np.array_equal(a.top_rows, b.top_rows) and np.array_equal(a.hist_counts, b.hist_counts)
