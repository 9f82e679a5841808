"""core.analysis.sae: TopK and ReLU + L1 sparse autoencoders, their trainer, evaluation and SAELens format.

Fast tests train tiny SAEs (a few dozen steps) on a real minilm tokens run of the demo
sentences and use a 2-block random Llama (minilm's tokenizer) for the next-token loss;
the slow test trains on the bundled SmolLM2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import core
from core.analysis.sae import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    SAEConfig,
    SAETrainer,
    SAETrainingStopped,
    SparseAutoencoder,
    activation_batches,
    held_out_split,
    import_saelens,
    list_saes,
    load_saelens,
    next_token_losses,
    open_sae,
    save_saelens,
    token_rows,
    train_sae,
    train_sae_on_run,
)
from core.errors import LayerscopeError
from core.store import Store

LAYER = "encoder.layer.3"
TINY = {"expansion": 2.0, "k": 16, "batch_size": 128, "lr": 2e-3, "dead_window": 2000}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny SAE steps are faster on one thread; with two on a busy 2-core machine they are ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo_tokens(tmp_path_factory, minilm):
    """A minilm tokens run of 200 demo sentences (about 4.5k tokens), one layer."""
    store = Store(tmp_path_factory.mktemp("sae_ws"))
    data = core.load_dataset("demo:sentences", limit=200)
    return core.extract(minilm, data, layers=[LAYER], pooling="tokens", store=store), store


def _random_sae(d_in=8, d_sae=32, architecture="topk", k=4, seed=0) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(d_in, d_sae, architecture=architecture, k=k if architecture == "topk" else None)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return sae.eval()


def _identity_sae(d: int) -> SparseAutoencoder:
    """A standard SAE that reconstructs exactly: relu(x) - relu(-x) = x."""
    sae = SparseAutoencoder(d, 2 * d, architecture="standard")
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae.eval()


# ----- configuration -----------------------------------------------------------------------
def test_config__width_smaller_than_d_is_refused():
    with pytest.raises(LayerscopeError, match=r"expansion=0.5 .*width smaller than d"):
        SAEConfig(expansion=0.5)


def test_config__k_larger_than_width_is_refused():
    config = SAEConfig(expansion=1.0, k=500)
    with pytest.raises(LayerscopeError, match=r"k=500 is larger than the width 384"):
        config.check_for(384)
    with pytest.raises(LayerscopeError, match="k=500"):
        SAETrainer(config, 384)


@pytest.mark.parametrize("bad", [{"architecture": "gated"}, {"lr": 0.0}, {"batch_size": 0},
                                 {"training_tokens": 10, "batch_size": 64}, {"held_out_fraction": 1.0},
                                 {"k": 0}, {"normalize_activations": "layer_norm"}])
def test_config__bad_values_name_the_parameter(bad):
    name = next(iter(bad))
    with pytest.raises(LayerscopeError, match=name):
        SAEConfig(**bad)


def test_config__equal_values_give_one_store_key():
    from core.analysis.sae import sae_key

    a, b = SAEConfig(expansion=4, k=np.int64(32)), SAEConfig(expansion=4.0, k=32)
    assert a == b and sae_key("run", "layer", a) == sae_key("run", "layer", b)
    assert sae_key("run", "layer", a) != sae_key("run", "layer", SAEConfig(expansion=4.0, k=32, seed=1))


def test_config__is_frozen_and_round_trips_through_a_dict():
    config = SAEConfig(architecture="standard", l1_coefficient=3.0, seed=4)
    with pytest.raises(AttributeError):
        config.seed = 5  # type: ignore[misc]
    assert SAEConfig.from_dict(config.as_dict()) == config


# ----- the autoencoder -------------------------------------------------------------------------
def test_topk__keeps_exactly_k_active_features():
    sae = _random_sae(d_in=16, d_sae=64, k=5)
    with torch.no_grad():
        sae.b_enc.fill_(100.0)  # every pre-activation positive: the ReLU after TopK removes none
    acts = sae.encode(torch.randn(50, 16))
    assert ((acts > 0).sum(-1) == 5).all()


def test_topk__never_more_than_k_and_keeps_the_largest():
    sae = _random_sae(d_in=16, d_sae=64, k=5)
    x = torch.randn(50, 16)
    acts = sae.encode(x)
    pre = sae.pre_activations(x)
    assert ((acts > 0).sum(-1) <= 5).all()
    top = pre.topk(5, dim=-1)
    kept = acts.gather(-1, top.indices)
    assert torch.allclose(kept, torch.relu(top.values))


def test_standard__is_relu_of_the_encoder():
    sae = _random_sae(architecture="standard")
    x = torch.randn(10, 8)
    expected = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert torch.allclose(sae.encode(x), expected)
    assert torch.allclose(sae(x), expected @ sae.W_dec + sae.b_dec)


def test_fold_scaling_factor__sae_on_scaled_inputs_equals_folded_sae_on_raw():
    sae = _random_sae(architecture="standard")
    x = torch.randn(20, 8)
    scaled_out = sae(x * 3.0) / 3.0
    sae.fold_scaling_factor(3.0)
    assert torch.allclose(sae(x), scaled_out, atol=1e-5)


# ----- training -----------------------------------------------------------------------------------
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


def test_train_sae_on_run__nan_loss_stores_the_last_good_checkpoint(demo_tokens, tmp_path, monkeypatch):
    import core.analysis.sae as sae_module

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


# ----- activations from a run ----------------------------------------------------------------------
def test_token_rows__leaves_first_tokens_out(demo_tokens):
    acts, _ = demo_tokens
    rows = token_rows(acts, np.array([0, 2]), exclude_first_token=True)
    expected = np.r_[acts.offsets[0] + 1 : acts.offsets[1], acts.offsets[2] + 1 : acts.offsets[3]]
    assert np.array_equal(rows, expected)
    assert token_rows(acts, exclude_first_token=False).size == int(acts.lengths.sum())


def test_held_out_split__is_a_seeded_partition_of_inputs():
    train, held = held_out_split(100, 0.1, seed=3)
    assert held.size == 10 and np.intersect1d(train, held).size == 0
    assert np.array_equal(np.sort(np.r_[train, held]), np.arange(100))
    assert np.array_equal(held_out_split(100, 0.1, seed=3)[1], held)


def test_activation_batches__one_unshuffled_epoch_reads_every_row_in_order():
    values = np.arange(50, dtype=np.float32).reshape(25, 2)
    rows = np.array([1, 3, 4, 8, 20, 24])
    batches = list(activation_batches(values, rows, batch_size=4, epochs=1, shuffle=False, buffer_bytes=16))
    assert [b.shape[0] for b in batches] == [4, 2]
    assert np.array_equal(torch.cat(batches).numpy(), values[rows])


def test_activation_batches__shuffled_epochs_cover_all_rows():
    values = np.arange(200, dtype=np.float32).reshape(100, 2)
    rows = np.arange(0, 100, 2)
    batches = list(activation_batches(values, rows, batch_size=10, epochs=2, seed=1, buffer_bytes=200))
    seen = torch.cat(batches).numpy()[:, 0] / 2
    assert sorted(seen.tolist()) == sorted(np.repeat(rows, 2).tolist())


# ----- a real run -------------------------------------------------------------------------------------
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


# ----- SAELens format ------------------------------------------------------------------------------
def test_save_load__round_trip_is_exact(tmp_path):
    for architecture in ("topk", "standard"):
        sae = _random_sae(architecture=architecture)
        sae.info = {"model_name": "minilm", "hook_name": LAYER}
        folder = save_saelens(sae, tmp_path / architecture)
        loaded = load_saelens(folder)
        for name, tensor in sae.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
        assert (loaded.architecture, loaded.k, loaded.d_in, loaded.d_sae) == (architecture, sae.k, 8, 32)
        x = torch.randn(7, 8)
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert loaded.info["hook_name"] == LAYER


def test_save__writes_exactly_the_keys_and_shapes_saelens_reads(tmp_path):
    sae = _random_sae(d_in=8, d_sae=32, k=4)
    sae.info = {"model_name": "minilm", "hook_name": LAYER, "context_size": 128, "dataset_path": "demo:sentences"}
    folder = save_saelens(sae, tmp_path / "sae")
    assert sorted(p.name for p in folder.iterdir()) == [CFG_FILENAME, WEIGHTS_FILENAME]
    weights = load_file(str(folder / WEIGHTS_FILENAME))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "W_enc": (8, 32), "b_enc": (32,), "W_dec": (32, 8), "b_dec": (8,)}
    assert all(v.dtype == torch.float32 for v in weights.values())
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    # SAELens 6: flat SAEConfig fields + architecture-specific k + metadata
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"]) == ("topk", 8, 32, 4)
    assert (cfg["dtype"], cfg["device"], cfg["normalize_activations"]) == ("float32", "cpu", "none")
    assert cfg["apply_b_dec_to_input"] is True and cfg["reshape_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == LAYER and cfg["metadata"]["model_name"] == "minilm"
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6
    assert cfg["sae_lens_version"] == cfg["metadata"]["sae_lens_version"]  # read from either place
    # pre-6 readers: the same facts under their old names
    assert cfg["hook_name"] == LAYER and cfg["hook_layer"] == 3
    assert cfg["activation_fn_str"] == "topk" and cfg["activation_fn_kwargs"] == {"k": 4}
    assert cfg["finetuning_scaling_factor"] is False and cfg["context_size"] == 128


def _write_saelens_folder(folder, cfg, tensors):
    folder.mkdir(parents=True)
    (folder / CFG_FILENAME).write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS_FILENAME))
    return folder


def _saelens_weights(d_in, d_sae, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.randn(d_sae, generator=g),
            "W_dec": torch.randn(d_sae, d_in, generator=g), "b_dec": torch.randn(d_in, generator=g), **extra}


def test_load_saelens__reads_a_folder_in_saelens_6_layout(tmp_path):
    cfg = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False,
           "normalize_activations": "none", "reshape_activations": "none", "architecture": "standard",
           "metadata": {"model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post", "sae_lens_version": "6.12.1"}}
    weights = _saelens_weights(6, 12)
    sae = load_saelens(_write_saelens_folder(tmp_path / "std", cfg, weights))
    x = torch.randn(5, 6)
    expected = torch.relu(x @ weights["W_enc"] + weights["b_enc"])  # apply_b_dec_to_input=False
    assert torch.allclose(sae.encode(x), expected)
    assert torch.allclose(sae(x), expected @ weights["W_dec"] + weights["b_dec"], atol=1e-5)
    assert sae.info["hook_name"] == "blocks.3.hook_resid_post"


def test_load_saelens__reads_pre_6_topk_and_jumprelu_layouts(tmp_path):
    old_topk = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "standard",
                "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "hook_name": "blocks.0.hook_resid_pre",
                "normalize_activations": False, "apply_b_dec_to_input": True}
    sae = load_saelens(_write_saelens_folder(tmp_path / "topk", old_topk, _saelens_weights(6, 12)))
    assert (sae.architecture, sae.k) == ("topk", 3)
    assert ((sae.encode(torch.randn(9, 6)) > 0).sum(-1) <= 3).all()
    jump = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "jumprelu",
            "metadata": {"sae_lens_version": "6.0.0"}}
    weights = _saelens_weights(6, 12, threshold=torch.full((12,), 0.5))
    sae = load_saelens(_write_saelens_folder(tmp_path / "jump", jump, weights))
    x = torch.randn(9, 6)
    pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    assert torch.allclose(sae.encode(x), pre * (pre > 0.5))


@pytest.mark.parametrize("damage, message", [
    ("no_cfg", "cfg.json is missing"),
    ("bad_json", "not valid JSON"),
    ("truncated_weights", "not a readable safetensors file"),
    ("transposed", r"W_enc has shape \(12, 6\) but cfg.json \(d_in=6, d_sae=12\) needs \(6, 12\)"),
    ("missing_key", "missing b_enc"),
    ("gated", "architecture='gated' is not supported"),
    ("k_too_large", "k between 1 and d_sae=12"),
    ("nan", "NaN or inf"),
])
def test_load_saelens__corrupt_or_wrong_shaped_folders_are_refused(tmp_path, damage, message):
    cfg = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "standard",
           "metadata": {"sae_lens_version": "6.0.0"}}
    weights = _saelens_weights(6, 12)
    if damage == "transposed":
        weights["W_enc"] = weights["W_enc"].T
    if damage == "missing_key":
        del weights["b_enc"]
    if damage == "gated":
        cfg["architecture"] = "gated"
    if damage == "k_too_large":
        cfg.update(architecture="topk", k=13)
    if damage == "nan":
        weights["W_dec"][0, 0] = float("nan")
    folder = _write_saelens_folder(tmp_path / damage, cfg, weights)
    if damage == "no_cfg":
        (folder / CFG_FILENAME).unlink()
    if damage == "bad_json":
        (folder / CFG_FILENAME).write_text("{not json")
    if damage == "truncated_weights":
        data = (folder / WEIGHTS_FILENAME).read_bytes()
        (folder / WEIGHTS_FILENAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(LayerscopeError, match=message):
        load_saelens(folder)


def test_import_saelens__d_in_must_match_the_layer(demo_tokens, tmp_path):
    acts, store = demo_tokens
    folder = save_saelens(_random_sae(d_in=768, d_sae=32), tmp_path / "wide")
    with pytest.raises(LayerscopeError, match=r"d_in=768 but layer 'encoder.layer.3' .* is 384 wide"):
        import_saelens(folder, acts, LAYER, store=store)


def test_import_saelens__stores_an_evaluated_entry(demo_tokens, tmp_path):
    acts, _ = demo_tokens
    store = Store(tmp_path / "ws")
    folder = save_saelens(_identity_sae(384), tmp_path / "identity")
    entry = import_saelens(folder, acts, LAYER, store=store)
    assert entry.meta["source"] == "imported" and entry.evaluation.fve == pytest.approx(1.0, abs=1e-5)
    assert open_sae(store, entry.key).sae.d_sae == 768


# ----- next-token loss ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_llama(minilm):
    import transformers

    from core.models import wrap_hf

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(minilm.tokenizer), hidden_size=32, num_attention_heads=4,
                                      num_hidden_layers=2, intermediate_size=64, num_key_value_heads=2)
    module = transformers.LlamaForCausalLM(config).eval()
    return wrap_hf("tiny-llama", module, minilm.tokenizer, "tiny llama", "random")


def test_next_token_losses__a_perfect_reconstruction_leaves_the_loss_unchanged(tiny_llama):
    texts = ["The cat sat on the mat.", "Rain is expected all week in the north."]
    losses = next_token_losses(_identity_sae(32), tiny_llama, "model.layers.0", texts)
    assert losses["sae"] == pytest.approx(losses["clean"], abs=1e-5)
    assert abs(losses["zero"] - losses["clean"]) > 1e-3
    assert losses["n_texts"] == 2


def test_next_token_losses__refuses_an_encoder_and_a_wrong_width(minilm, tiny_llama):
    with pytest.raises(LayerscopeError, match="not a causal LM"):
        next_token_losses(_identity_sae(384), minilm, LAYER, ["a b c"])
    with pytest.raises(LayerscopeError, match="SAE takes d_in=8"):
        next_token_losses(_identity_sae(8), tiny_llama, "model.layers.0", ["a b c d"])


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
