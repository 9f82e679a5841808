"""core.analysis.sae.trainer: SAETrainer steps reduce the loss, fit folds the scale and stops on NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.sae import SAEConfig, SAETrainer, SAETrainingStopped, train_sae


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_train_step__reduces_loss_on_repeated_batch(architecture):
    torch.manual_seed(0)
    x = torch.randn(64, 16) @ torch.randn(16, 16)
    trainer = SAETrainer(SAEConfig(architecture=architecture, expansion=2.0, k=4, lr=3e-3, batch_size=64,
                                   training_tokens=64 * 100, l1_coefficient=0.1), 16, device="cpu")
    losses = [trainer.step(x)["loss"] for _ in range(60)]
    assert losses[-1] < 0.6 * losses[0]
    assert all(np.isfinite(losses))


def test_train_step__topk_decoder_rows_stay_unit_norm():
    trainer = SAETrainer(SAEConfig(expansion=2.0, k=4, batch_size=32, training_tokens=320), 8, device="cpu")
    for _ in range(5):
        trainer.step(torch.randn(32, 8))
    norms = trainer.sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_fit__reports_progress_and_folds_normalisation():
    torch.manual_seed(0)
    data = torch.randn(1024, 8) * 50.0 + 10.0  # far from unit scale: normalisation matters
    calls = []
    sae, history = train_sae(iter(data.split(64)), 8, SAEConfig(expansion=2.0, k=4, batch_size=64,
                             training_tokens=1024), device="cpu", progress=lambda s, t, m: calls.append((s, t, m)))
    assert calls and calls[-1][0] == calls[-1][1] == 16
    assert set(calls[-1][2]) >= {"loss", "l0", "fve", "dead_share"}
    assert history.tokens[-1] == 1024
    assert history.norm_scaling_factor == pytest.approx(np.sqrt(8) / float(data.norm(dim=1)[:512].mean()), rel=1e-4)
    assert sae.normalize_activations == "none"
    recon = sae(data)  # raw inputs: the folded SAE reconstructs in the data's own units
    assert float(((recon - data) ** 2).sum() / ((data - data.mean(0)) ** 2).sum()) < 1.0


def test_fit__nan_loss_stops_and_keeps_last_good_checkpoint():
    torch.manual_seed(0)
    good = [torch.randn(32, 8) for _ in range(12)]
    bad = torch.full((32, 8), float("nan"))
    trainer = SAETrainer(SAEConfig(expansion=2.0, k=4, batch_size=32, training_tokens=32 * 40), 8, device="cpu",
                         checkpoint_every=5)
    with pytest.raises(SAETrainingStopped, match=r"loss became nan at step 13 .*checkpoint from step 10") as info:
        trainer.fit(iter([*good, bad, *good]))
    kept = info.value.sae
    assert kept is not None
    assert all(torch.isfinite(p).all() for p in kept.parameters())
    assert info.value.history.steps == 12
