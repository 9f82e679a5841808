"""core.analysis.sae.trainer: a TopK SAE trained with SAETrainer recovers known sparse directions.

Synthetic data with a known dictionary: 64 random unit directions in d=48, each token a
non-negative combination of 3 of them (coefficients in [0.5, 2]), 20k tokens. A TopK SAE
(k=3, width 128 = 2x the true dictionary) trained on it should have, for almost every true
direction, a decoder row pointing the same way. The score is the mean over true directions
of the best cosine with any decoder row; an untrained SAE scores about 0.4 on it.
Runs in a few seconds on one thread (conftest.py's one_thread).
"""

from __future__ import annotations

import pytest
import torch

from core.analysis.sae import SAEConfig, SAETrainer, SparseAutoencoder

D_IN, N_TRUE, N_TOKENS, ACTIVE = 48, 64, 20_000, 3
WIDTH, K, BATCH = 128, 3, 256


@pytest.fixture(scope="module")
def dictionary_data() -> tuple[torch.Tensor, torch.Tensor]:
    """(true directions (64, 48), unit rows; tokens (20000, 48), each a sparse non-negative mix of 3)."""
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(N_TRUE, D_IN, generator=g)
    directions /= directions.norm(dim=1, keepdim=True)
    which = torch.rand(N_TOKENS, N_TRUE, generator=g).argsort(dim=1)[:, :ACTIVE]  # 3 distinct directions per token
    coefficients = torch.rand(N_TOKENS, ACTIVE, generator=g) * 1.5 + 0.5
    codes = torch.zeros(N_TOKENS, N_TRUE).scatter_(1, which, coefficients)
    return directions, codes @ directions


def _batches(X: torch.Tensor, seed: int = 0):
    """Shuffled passes over X, forever (the trainer stops after config.total_steps)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        yield from X[torch.randperm(X.shape[0], generator=g)].split(BATCH)


def mean_max_cosine(directions: torch.Tensor, sae: SparseAutoencoder) -> float:
    """Mean over true directions of the largest cosine with any decoder row."""
    W = sae.W_dec.detach()
    W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((directions @ W.T).max(dim=1).values.mean())


def test_topk_sae__recovers_the_true_sparse_directions(dictionary_data):
    directions, X = dictionary_data
    config = SAEConfig(expansion=WIDTH / D_IN, k=K, batch_size=BATCH, training_tokens=10 * N_TOKENS, lr=2e-3,
                       dead_window=5_000, seed=0)
    trainer = SAETrainer(config, D_IN, device="cpu")
    assert trainer.sae.d_sae == WIDTH
    untrained = mean_max_cosine(directions, trainer.sae)  # the initial SAE: random unit decoder rows
    sae, history = trainer.fit(_batches(X))

    assert not history.stopped and history.steps == config.total_steps
    trained = mean_max_cosine(directions, sae)
    assert untrained < 0.6, untrained  # chance level: random rows do not line up with the dictionary
    assert trained > 0.9, f"mean max cosine {trained:.3f} (untrained: {untrained:.3f})"
    assert trained > untrained + 0.3
    W = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    recovered = (directions @ W.T).max(dim=1).values > 0.9
    assert recovered.float().mean() > 0.8  # most directions individually, not a few perfectly
    assert history.fve[-1] > 0.8


def test_random_sae__does_not_recover_them(dictionary_data):
    """The score is not trivially high: an SAE with random (non-trained) decoder rows of the same width fails."""
    directions, _ = dictionary_data
    torch.manual_seed(1)
    sae = SparseAutoencoder(D_IN, WIDTH, architecture="topk", k=K)
    with torch.no_grad():
        sae.W_dec.normal_()
    assert mean_max_cosine(directions, sae) < 0.6
