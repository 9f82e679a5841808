"""core.analysis.sae.entries: SAEs as Store entries, including entries written by earlier Layerscope versions.

The workspace layout of an SAE is fixed: ``results/sae/<key>/`` with cfg.json,
sae_weights.safetensors, history_*.npy and meta.json (run, layer, config, evaluation, training,
the sha256 of every file). The entry below is written with plain file operations in exactly
that layout, so the test fails if the reader ever stops understanding workspaces that exist.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.analysis.sae import SAEConfig, delete_sae, list_saes, open_sae, train_sae_on_run
from core.errors import LayerscopeError
from core.store import Store
from sae_helpers import LAYER, TINY

CONFIG = SAEConfig(**TINY, training_tokens=128 * 10)


def _key_of(run_key: str, config: SAEConfig) -> str:
    """The store key of a trained SAE: sha256 of the sorted JSON of its inputs, first 20 hex digits."""
    payload = {"format": 1, "kind": "sae", "run": run_key, "layer": LAYER, "config": config.as_dict(), "version": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def _write_entry_in_workspace_layout(root, acts, config: SAEConfig) -> str:
    """A trained-SAE entry as the workspace holds it: plain files, checksums in meta.json."""
    key = _key_of(acts.key, config)
    folder = root / "results" / "sae" / key
    folder.mkdir(parents=True)
    d_in, d_sae, k = 384, 768, 16
    g = torch.Generator().manual_seed(0)
    save_file({"W_enc": torch.randn(d_in, d_sae, generator=g) / 20, "b_enc": torch.zeros(d_sae),
               "W_dec": torch.randn(d_sae, d_in, generator=g) / 20, "b_dec": torch.zeros(d_in)},
              str(folder / "sae_weights.safetensors"))
    metadata = {"model_name": "minilm", "hook_name": LAYER, "hook_head_index": None, "prepend_bos": True,
                "context_size": 128, "dataset_path": "demo:sentences", "model_from_pretrained_kwargs": {},
                "neuronpedia_id": None, "sae_lens_version": "6.0.0", "sae_lens_training_version": None}
    cfg = {"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": metadata, **metadata, "hook_layer": 3, "activation_fn_str": "topk", "activation_fn": "topk",
           "activation_fn_kwargs": {"k": k}, "finetuning_scaling_factor": False, "dataset_trust_remote_code": True,
           "seqpos_slice": [None], "layerscope": {"run": acts.key}, "k": k}
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=1))
    history = {"tokens": [1280.0], "loss": [3.5], "mse": [3.4], "aux": [0.1], "l0": [16.0], "fve": [0.4],
               "dead_share": [0.0], "lr": [0.0]}
    for name, values in history.items():
        np.save(folder / f"history_{name}.npy", np.asarray(values, dtype=np.float64), allow_pickle=False)
    checksums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    evaluation = {"fve": 0.42, "mse": 10.5, "l0": 16.0, "dead_share": 0.25, "n_dead": 192, "n_tokens": 400,
                  "loss_clean": None, "loss_with_sae": None, "loss_zero_ablation": None, "n_loss_texts": 0,
                  "loss_increase": None, "loss_recovered": None}
    meta = {"run": acts.key, "layer": LAYER, "model": "minilm", "model_weights": acts.meta["model"].get("weights"),
            "is_causal_lm": False, "dataset": acts.dataset_name, "dataset_fingerprint": "f" * 16,
            "architecture": "topk", "k": k, "d_in": d_in, "d_sae": d_sae, "version": 1, "source": "trained",
            "config": config.as_dict(), "exclude_first_token": True, "evaluation": evaluation, "held_out_inputs": 20,
            "training": {"seconds": 1.5, "stopped": "", "steps": 10, "tokens": 1280, "norm_scaling_factor": 0.25,
                         "resampled": 0, "device": "cpu"},
            "kind": "sae", "key": key, "arrays": [f"history_{name}" for name in history],
            "created": "2026-01-02T03:04:05", "checksums": checksums}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return key


def test_sae_in_the_workspace_layout__is_listed_opened_and_reused(demo_tokens, tmp_path):
    acts, _ = demo_tokens
    store = Store(tmp_path / "ws")
    key = _write_entry_in_workspace_layout(store.root, acts, CONFIG)

    (meta,) = list_saes(store)
    assert meta["key"] == key and meta["layer"] == LAYER and meta["created"] == "2026-01-02T03:04:05"
    entry = open_sae(store, key)
    assert (entry.sae.architecture, entry.sae.k, entry.sae.d_in, entry.sae.d_sae) == ("topk", 16, 384, 768)
    assert entry.config == CONFIG and entry.run_key == acts.key and entry.layer == LAYER
    assert entry.evaluation.fve == pytest.approx(0.42) and entry.evaluation.loss_recovered is None
    assert entry.history.tokens == [1280.0] and entry.history.norm_scaling_factor == 0.25
    assert entry.label.startswith("minilm · encoder.layer.3 · topk k=16 · 768 latents")
    # the same run, layer and config read this entry instead of training again
    again = train_sae_on_run(acts, LAYER, CONFIG, store=store)
    assert again.key == key and again.meta["created"] == "2026-01-02T03:04:05"


def test_open_sae__a_damaged_entry_says_so_and_delete_removes_it(demo_tokens, tmp_path):
    acts, _ = demo_tokens
    store = Store(tmp_path / "ws")
    key = _write_entry_in_workspace_layout(store.root, acts, CONFIG)
    weights = store.root / "results" / "sae" / key / "sae_weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in W_dec
    weights.write_bytes(bytes(data))
    with pytest.raises(LayerscopeError, match="damaged.*train the SAE again"):
        open_sae(store, key)
    delete_sae(store, key)
    assert list_saes(store) == []
    with pytest.raises(LayerscopeError, match="not in the workspace"):
        open_sae(store, key)
