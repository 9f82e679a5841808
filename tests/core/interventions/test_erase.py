"""Concept erasure on real runs: LEACE against its closed form, probes at chance, hooks gone afterwards."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import core
from core.interventions.erase import erase_concept, fit_leace, fit_mean_difference, mean_squared_change, one_hot

LAYERS = ["encoder.layer.1", "encoder.layer.3", "encoder.layer.5"]


@pytest.fixture(scope="module")
def sentences_run(minilm, session_store):
    """minilm on the first 120 demo sentences, mean-pooled (shared through the session workspace)."""
    return core.extract(minilm, core.load_dataset("demo:sentences", limit=120), layers=LAYERS, pooling="mean",
                        store=session_store)


@pytest.fixture(scope="module")
def all_sentences_run(minilm, sentences, session_store):
    """minilm on all 864 demo sentences, every layer mean-pooled (as the demo workspace holds it)."""
    return core.extract(minilm, sentences, layers="all", pooling="mean", store=session_store)


def leace_reference(X: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """LEACE in closed form (Belrose et al. 2023, Theorem 4.3; concept-erasure leace.py, without shrinkage).

    W = Sigma_xx^(-1/2) (pseudo-inverse on the covariance's numerical rank), P = W^+ P_{W Sigma_xz} W,
    x' = x - P (x - mu).
    """
    n = len(X)
    mu = X.mean(0)
    Xc, Zc = X - mu, Z - Z.mean(0)
    sigma_xx, sigma_xz = Xc.T @ Xc / (n - 1), Xc.T @ Zc / (n - 1)
    eigval, eigvec = np.linalg.eigh(sigma_xx)
    keep = eigval > eigval[-1] * len(eigval) * np.finfo(np.float64).eps
    inv_sqrt = np.where(keep, 1 / np.sqrt(np.clip(eigval, 1e-300, None)), 0.0)
    W = (eigvec * inv_sqrt) @ eigvec.T
    W_pinv = (eigvec * np.where(keep, np.sqrt(np.clip(eigval, 0, None)), 0.0)) @ eigvec.T
    u, s, _ = np.linalg.svd(W @ sigma_xz, full_matrices=False)
    u = u[:, s > s.max() * 1e-8]
    P = W_pinv @ u @ u.T @ W
    return X - (X - mu) @ P.T


def test_fit_leace__equals_the_closed_form(sentences_run):
    X = np.asarray(sentences_run["encoder.layer.3"], dtype=np.float64)
    _, Z = one_hot(sentences_run.labels("topic"))
    erased = fit_leace(X, Z)(X)
    np.testing.assert_allclose(erased, leace_reference(X, Z), atol=1e-5)
    # the erased rows carry no linear trace of the concept: zero cross-covariance with the labels
    assert np.abs((erased - erased.mean(0)).T @ (Z - Z.mean(0))).max() < 1e-6


def test_leace__moves_the_activations_least(sentences_run):
    X = np.asarray(sentences_run["encoder.layer.1"], dtype=np.float64)
    _, Z = one_hot(sentences_run.labels("topic"))
    assert mean_squared_change(X, fit_leace(X, Z)) <= mean_squared_change(X, fit_mean_difference(X, Z)) + 1e-9


@pytest.mark.slow
def test_erase_concept__leace_brings_the_topic_probe_within_2_points_of_chance(all_sentences_run):
    result = erase_concept(None, all_sentences_run, "encoder.layer.1", "topic")
    assert result.chance == pytest.approx(1 / 6) and result.accuracy_before[0] > 0.9
    assert abs(result.accuracy_after[0] - result.chance) <= 0.02  # cross-fitted, 864 inputs
    # LEACE moves the activations least; the mean-difference projection's change is reported beside it
    assert 0 < result.mean_squared_change <= result.mean_difference_change
    assert result.params["rank"] == 5  # six topics: a rank K - 1 erasure


def _encode(minilm, text: str) -> torch.Tensor:
    batch = minilm.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        return minilm.module(**batch).last_hidden_state


@pytest.mark.slow
def test_erase_concept__topic_at_chance_after_leace_and_hooks_removed(minilm, sentences_run, session_store):
    reference = _encode(minilm, "The striker scored twice in the final.")
    result = erase_concept(minilm, sentences_run, "encoder.layer.1", "topic", later_layers=["encoder.layer.5"],
                           store=session_store)
    assert result.layer_names == ("encoder.layer.1", "encoder.layer.5")
    assert result.accuracy_before[0] > result.chance + 0.4
    # 120 inputs: a chance-level probe's accuracy has a standard deviation of ~0.036 over inputs (0.08: 2.2 sd)
    assert abs(result.accuracy_after[0] - result.chance) <= 0.08
    assert result.accuracy_after[1] < result.accuracy_before[1]
    assert 0 < result.mean_squared_change <= result.mean_difference_change
    assert 0 < result.relative_change < 1
    assert math.isnan(result.loss_before) and math.isnan(result.loss_after)  # an encoder has no next-token loss
    assert torch.equal(_encode(minilm, "The striker scored twice in the final."), reference)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in minilm.module.modules())
    again = erase_concept(minilm, sentences_run, "encoder.layer.1", "topic", later_layers=["encoder.layer.5"],
                          store=session_store)
    np.testing.assert_array_equal(again.accuracy_after, result.accuracy_after)  # read back from the store


def test_erase_concept__bad_input(minilm, sentences_run):
    from core.errors import LayerscopeError

    with pytest.raises(LayerscopeError, match="method='inlp' must be one of: leace, mean_difference"):
        erase_concept(minilm, sentences_run, "encoder.layer.1", "topic", method="inlp")
    with pytest.raises(LayerscopeError, match="'encoder.layer.1' does not come after 'encoder.layer.3'"):
        erase_concept(minilm, sentences_run, "encoder.layer.3", "topic", later_layers=["encoder.layer.1"])


@pytest.mark.slow
def test_erase_concept__causal_lm_reports_the_next_token_loss(smollm2, session_store):
    acts = core.extract(smollm2, core.load_dataset("demo:sentences", limit=24), layers=["model.layers.15"],
                        pooling="mean", store=session_store)
    result = erase_concept(smollm2, acts, "model.layers.15", "sentiment", n_folds=3)
    assert 0 < result.loss_before < 15 and math.isfinite(result.loss_after)
    assert result.loss_after != result.loss_before
    assert abs(result.accuracy_after[0] - result.chance) <= 0.1
