"""core.analysis.sae.pipeline: train or import an SAE on a real minilm tokens run, evaluate and store it.

Fast tests train tiny SAEs (a few dozen steps) on a real minilm tokens run of the demo
sentences; the slow test trains on the bundled SmolLM2 and measures the next-token loss.
"""

from __future__ import annotations

import pytest
import torch

import core
from core.analysis.sae import (
    SAEConfig,
    SAETrainingStopped,
    import_saelens,
    list_saes,
    open_sae,
    save_saelens,
    train_sae_on_run,
)
from core.errors import LayerscopeError
from core.store import Store
from sae_helpers import LAYER, TINY, identity_sae, random_sae


def test_train_sae_on_run__nan_loss_stores_the_last_good_checkpoint(demo_tokens, tmp_path, monkeypatch):
    import core.analysis.sae.pipeline as sae_module  # the module that feeds the trainer its batches

    acts, _ = demo_tokens
    store = Store(tmp_path / "ws")
    real = sae_module.activation_batches

    def poisoned(values, rows, **kwargs):
        batches = real(values, rows, **kwargs)
        if kwargs.get("epochs") == 1:  # evaluation reads clean batches
            yield from batches
            return
        for i, batch in enumerate(batches):
            yield torch.full_like(batch, float("nan")) if i == 60 else batch

    monkeypatch.setattr(sae_module, "activation_batches", poisoned)
    with pytest.raises(SAETrainingStopped, match=r"step 61 .*checkpoint from step 50.*stored as SAE"):
        train_sae_on_run(acts, LAYER, SAEConfig(**TINY, training_tokens=128 * 100), store=store)
    (meta,) = list_saes(store)
    assert "loss became nan" in meta["training"]["stopped"] and meta["training"]["steps"] == 60
    entry = open_sae(store, meta["key"])
    assert all(torch.isfinite(p).all() for p in entry.sae.parameters())
    assert 0.0 < entry.evaluation.fve <= 1.0


def test_fit__cancel_from_progress_writes_nothing(demo_tokens, tmp_path):
    acts, _ = demo_tokens
    store = Store(tmp_path / "ws")

    class Cancelled(Exception):
        pass

    def cancel(step, total, metrics):
        if step >= 10:
            raise Cancelled

    with pytest.raises(Cancelled):
        train_sae_on_run(acts, LAYER, SAEConfig(**TINY, training_tokens=128 * 40), store=store, progress=cancel)
    assert list_saes(store) == []
    results = store.root / "results"
    assert not results.exists() or not any(results.rglob("*"))  # no half-written entry, no temp folder


def test_train_sae_on_run__explains_held_out_variance_on_the_demo_run(demo_tokens):
    acts, store = demo_tokens
    config = SAEConfig(**TINY, training_tokens=128 * 80)
    entry = train_sae_on_run(acts, LAYER, config, store=store)
    ev = entry.evaluation
    assert ev.fve > 0.35, ev
    assert ev.l0 == pytest.approx(16.0, abs=0.5)
    assert 0.0 <= ev.dead_share < 0.5
    assert ev.loss_clean is None  # an encoder has no next-token loss
    assert entry.meta["run"] == acts.key and entry.meta["layer"] == LAYER
    assert entry.history.tokens[-1] == 128 * 80
    again = train_sae_on_run(acts, LAYER, config, store=store)  # read back from the store
    assert again.key == entry.key and again.meta["created"] == entry.meta["created"]
    assert [m["key"] for m in list_saes(store)] == [entry.key]


def test_train_sae_on_run__pooled_run_is_refused(minilm, few_sentences, store):
    pooled = core.extract(minilm, few_sentences, layers=[LAYER], pooling="mean", store=store)
    with pytest.raises(LayerscopeError, match=r"per-token activations.*pooling='mean'.*pooling='tokens'"):
        train_sae_on_run(pooled, LAYER, SAEConfig(**TINY, training_tokens=256), store=store)


def test_train_sae_on_run__unknown_layer_is_refused(demo_tokens):
    acts, store = demo_tokens
    with pytest.raises(LayerscopeError, match="encoder.layer.9"):
        train_sae_on_run(acts, "encoder.layer.9", SAEConfig(**TINY, training_tokens=256), store=store)


def test_import_saelens__d_in_must_match_the_layer(demo_tokens, tmp_path):
    acts, store = demo_tokens
    folder = save_saelens(random_sae(d_in=768, d_sae=32), tmp_path / "wide")
    with pytest.raises(LayerscopeError, match=r"d_in=768 but layer 'encoder.layer.3' .* is 384 wide"):
        import_saelens(folder, acts, LAYER, store=store)


def test_import_saelens__stores_an_evaluated_entry(demo_tokens, tmp_path):
    acts, _ = demo_tokens
    store = Store(tmp_path / "ws")
    folder = save_saelens(identity_sae(384), tmp_path / "identity")
    entry = import_saelens(folder, acts, LAYER, store=store)
    assert entry.meta["source"] == "imported" and entry.evaluation.fve == pytest.approx(1.0, abs=1e-5)
    assert open_sae(store, entry.key).sae.d_sae == 768


def test_import_saelens__an_sae_of_another_layer_of_the_run_is_refused(demo_tokens, tmp_path):
    acts, store = demo_tokens
    sae = identity_sae(384)
    sae.info = {**sae.info, "hook_name": "encoder.layer.5"}  # written as blocks.5.hook_normalized_resid_post
    folder = save_saelens(sae, tmp_path / "layer5")
    assert "blocks.5.hook_normalized_resid_post" in (folder / "cfg.json").read_text()
    with pytest.raises(LayerscopeError, match=r"trained at 'blocks.5.hook_normalized_resid_post'.*'encoder.layer.5'"):
        import_saelens(folder, acts, LAYER, store=store)


@pytest.mark.slow
def test_train_sae_on_run__smollm2_reports_the_next_token_loss(smollm2, session_store):
    data = core.load_dataset("demo:sentences", limit=200)
    acts = core.extract(smollm2, data, layers=["model.layers.9"], pooling="tokens", store=session_store)
    entry = train_sae_on_run(acts, "model.layers.9", SAEConfig(expansion=4.0, k=32, batch_size=256, lr=1e-3,
                             training_tokens=256 * 200), store=session_store, model=smollm2, loss_texts=32)
    ev = entry.evaluation
    assert ev.fve > 0.5
    assert ev.loss_clean < ev.loss_with_sae < ev.loss_zero_ablation
    assert 0.0 < ev.loss_recovered <= 1.0
