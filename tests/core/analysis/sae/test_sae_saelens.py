"""core.analysis.sae.saelens: SAELens folders written exactly as SAELens reads them, and read back in every layout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from core.analysis.sae import CFG_FILENAME, WEIGHTS_FILENAME, load_saelens, save_saelens
from core.errors import LayerscopeError
from sae_helpers import LAYER, random_sae, saelens_weights, write_saelens_folder


def test_save_load__round_trip_is_exact(tmp_path):
    for architecture in ("topk", "standard"):
        sae = random_sae(architecture=architecture)
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
    sae = random_sae(d_in=8, d_sae=32, k=4)
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


def test_load_saelens__reads_a_folder_in_saelens_6_layout(tmp_path):
    cfg = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False,
           "normalize_activations": "none", "reshape_activations": "none", "architecture": "standard",
           "metadata": {"model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post", "sae_lens_version": "6.12.1"}}
    weights = saelens_weights(6, 12)
    sae = load_saelens(write_saelens_folder(tmp_path / "std", cfg, weights))
    x = torch.randn(5, 6)
    expected = torch.relu(x @ weights["W_enc"] + weights["b_enc"])  # apply_b_dec_to_input=False
    assert torch.allclose(sae.encode(x), expected)
    assert torch.allclose(sae(x), expected @ weights["W_dec"] + weights["b_dec"], atol=1e-5)
    assert sae.info["hook_name"] == "blocks.3.hook_resid_post"


def test_load_saelens__reads_pre_6_topk_and_jumprelu_layouts(tmp_path):
    old_topk = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "standard",
                "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "hook_name": "blocks.0.hook_resid_pre",
                "normalize_activations": False, "apply_b_dec_to_input": True}
    sae = load_saelens(write_saelens_folder(tmp_path / "topk", old_topk, saelens_weights(6, 12)))
    assert (sae.architecture, sae.k) == ("topk", 3)
    assert ((sae.encode(torch.randn(9, 6)) > 0).sum(-1) <= 3).all()
    jump = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "jumprelu",
            "metadata": {"sae_lens_version": "6.0.0"}}
    weights = saelens_weights(6, 12, threshold=torch.full((12,), 0.5))
    sae = load_saelens(write_saelens_folder(tmp_path / "jump", jump, weights))
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
    weights = saelens_weights(6, 12)
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
    folder = write_saelens_folder(tmp_path / damage, cfg, weights)
    if damage == "no_cfg":
        (folder / CFG_FILENAME).unlink()
    if damage == "bad_json":
        (folder / CFG_FILENAME).write_text("{not json")
    if damage == "truncated_weights":
        data = (folder / WEIGHTS_FILENAME).read_bytes()
        (folder / WEIGHTS_FILENAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(LayerscopeError, match=message):
        load_saelens(folder)
