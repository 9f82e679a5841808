"""Vision towers (ViT, CLIP) from Hugging Face folders against HF's own hidden states.

Each family is built from its transformers config class with tiny random weights, saved with
its image processor and loaded through `core.load_model(folder)`, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import core
from core.errors import LayerscopeError

TOWER = {  # tiny: 2 blocks, 32 wide, 32 px images in 8 px patches (16 patches + the class token)
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
FAMILIES = ("vit", "vit_classifier", "clip_vision", "clip_full")
DEFAULT_LAYERS = {
    "vit": ["embeddings", "layers.0", "layers.1"],
    "vit_classifier": ["embeddings", "layers.0", "layers.1"],
    # hidden_states[0] of CLIP is the input of the first block: the embeddings after pre_layrnorm
    "clip_vision": ["pre_layrnorm", "encoder.layers.0", "encoder.layers.1"],
    "clip_full": ["pre_layrnorm", "encoder.layers.0", "encoder.layers.1"],
}
POOLED = {  # (batch, tokens, d) -> (batch, d); vision inputs have no padding
    "mean": lambda hidden: hidden.mean(1),
    "max": lambda hidden: hidden.amax(1),
    "first": lambda hidden: hidden[:, 0],  # the class token
}


def _vit_processor():
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": 32, "width": 32})


def _clip_processor():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def _build(family: str):
    """(model to save, its vision tower as HF runs it, image processor)."""
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPVisionConfig,
        CLIPVisionModel,
        ViTConfig,
        ViTForImageClassification,
        ViTModel,
    )

    torch.manual_seed(0)
    if family == "vit":
        model = ViTModel(ViTConfig(**TOWER))
        return model, model, _vit_processor()
    if family == "vit_classifier":
        model = ViTForImageClassification(ViTConfig(**TOWER, num_labels=3))
        return model, model.vit, _vit_processor()
    if family == "clip_vision":
        model = CLIPVisionModel(CLIPVisionConfig(**TOWER))
        return model, model, _clip_processor()
    # a text tower with more blocks than the vision tower: the vision tower must still be the one chosen
    text = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64,
            "vocab_size": 99, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=TOWER, projection_dim=16))
    return model, model.vision_model, _clip_processor()


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    """family -> (folder, the reference tower in memory, its processor)."""
    built = {}
    for family in FAMILIES:
        model, tower, processor = _build(family)
        folder = tmp_path_factory.mktemp(family)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        built[family] = (folder, tower.eval(), processor)
    return built


@pytest.fixture(scope="module")
def digits():
    return core.load_dataset("demo:digits", limit=10)


def _hf_outputs(tower, processor, dataset):
    """HF's own forward on the dataset's images: (hidden_states, last_hidden_state, pooler_output)."""
    images = dataset.load_images(range(len(dataset)))
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = tower(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states, out.last_hidden_state, out.pooler_output


@pytest.mark.parametrize("family", FAMILIES)
def test_load_model__vision_folder_gives_image_model_with_hf_residual_stream(towers, family):
    folder, tower, _ = towers[family]
    loaded = core.load_model(folder, device="cpu")
    assert loaded.modality == "image" and loaded.tokenizer is None
    assert loaded.default_layers() == DEFAULT_LAYERS[family]
    assert len(loaded.default_layers()) == tower.config.num_hidden_layers + 1  # = len(hidden_states)
    assert ("ViT" if family.startswith("vit") else "CLIP vision tower") in loaded.description
    assert ("full CLIPModel" in loaded.description) == (family == "clip_full")


@pytest.mark.parametrize("pooling", sorted(POOLED))
@pytest.mark.parametrize("family", FAMILIES)
def test_extract__pooled_layers_equal_hf_hidden_states(towers, digits, store, family, pooling):
    folder, tower, processor = towers[family]
    loaded = core.load_model(folder, device="cpu")
    acts = core.extract(loaded, digits, layers="default", pooling=pooling, store=store, batch_size=4)
    hidden, _, _ = _hf_outputs(tower, processor, digits)
    assert len(acts.layer_names) == len(hidden) == 3
    for i, layer in enumerate(acts.layer_names):
        assert acts[layer].shape == (len(digits), 32)
        np.testing.assert_allclose(acts[layer], POOLED[pooling](hidden[i]).numpy(), atol=1e-5, err_msg=layer)


@pytest.mark.parametrize("family", ["vit", "clip_vision"])
def test_extract__final_norms_equal_hf_outputs(towers, digits, store, family):
    folder, tower, processor = towers[family]
    _, last, pooled = _hf_outputs(tower, processor, digits)
    # neither family normalises hidden_states[-1]: ViT's layernorm gives last_hidden_state,
    # CLIP's post_layernorm normalises only the class token and gives pooler_output
    norm, expected = ("layernorm", last.mean(1)) if family == "vit" else ("post_layernorm", pooled)
    acts = core.extract(core.load_model(folder, device="cpu"), digits, layers=[norm], store=store)
    np.testing.assert_allclose(acts[norm], expected.numpy(), atol=1e-5)


def test_load_model__preprocess_is_the_folders_image_processor(towers, digits):
    folder, _, processor = towers["clip_vision"]
    loaded = core.load_model(folder, device="cpu")
    images = digits.load_images([0, 1, 2])
    prepared = loaded.preprocess([image.convert("L") for image in images])  # grayscale is made RGB
    assert set(prepared) == {"pixel_values"} and prepared["pixel_values"].shape == (3, 3, 32, 32)
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(prepared["pixel_values"], expected)


@pytest.mark.parametrize("family", ["vit", "clip_full"])
def test_load_model__untrained_twin_loads_and_extracts(towers, digits, store, family):
    folder, _, _ = towers[family]
    trained = core.extract(core.load_model(folder, device="cpu"), digits, layers="default", store=store)
    twin = core.load_model(folder, device="cpu", reinit=True, seed=1)
    assert "untrained" in twin.name and twin.default_layers() == DEFAULT_LAYERS[family]
    acts = core.extract(twin, digits, layers="default", store=store)
    assert acts.key != trained.key
    for layer in acts.layer_names[1:]:
        assert np.isfinite(acts[layer]).all()
        assert not np.allclose(acts[layer], trained[layer], atol=1e-3)


def test_extract__last_and_tokens_poolings_are_refused_for_vision_towers(towers, digits, store):
    loaded = core.load_model(towers["vit"][0], device="cpu")
    for pooling in ("last", "tokens"):
        with pytest.raises(LayerscopeError, match=f"pooling='{pooling}' does not fit"):
            core.extract(loaded, digits, pooling=pooling, store=store)


def test_load_model__vision_folder_without_image_processor_is_refused(towers, tmp_path):
    folder = tmp_path / "vit-no-processor"
    shutil.copytree(towers["vit"][0], folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(LayerscopeError, match=r"ViT model \(vit\) but no image processor config \(preprocessor_config"):
        core.load_model(folder, device="cpu")


def test_load_model__unsupported_image_family_is_named(tmp_path):
    from transformers import DeiTConfig, DeiTModel

    DeiTModel(DeiTConfig(**TOWER)).save_pretrained(tmp_path)
    _vit_processor().save_pretrained(tmp_path)
    with pytest.raises(LayerscopeError, match="'deit' model .* no tokenizer.*vit \\(ViT\\), clip_vision_model"):
        core.load_model(tmp_path, device="cpu")


def test_load_model__vit_saved_without_pooler_loads_without_random_weights(tmp_path, digits, store):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    tower = ViTModel(ViTConfig(**TOWER), add_pooling_layer=False).eval()
    tower.save_pretrained(tmp_path)
    _vit_processor().save_pretrained(tmp_path)
    loaded = core.load_model(tmp_path, device="cpu")
    assert "pooler" not in loaded.layer_names()
    acts = core.extract(loaded, digits, layers=["layers.1"], store=store)
    hidden, _, _ = _hf_outputs(tower, _vit_processor(), digits)
    np.testing.assert_allclose(acts["layers.1"], hidden[2].mean(1).numpy(), atol=1e-5)


def test_load_model__checkpoint_missing_weights_is_refused(towers, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "clip-incomplete"
    shutil.copytree(towers["clip_vision"][0], folder)
    weights = load_file(folder / "model.safetensors")
    del weights["encoder.layers.1.mlp.fc2.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LayerscopeError, match=r"not a complete CLIP.*1 weights are missing \(encoder.layers.1.mlp.fc2"):
        core.load_model(folder, device="cpu")


def test_cli__extract_runs_a_vision_folder_on_digits(towers, tmp_path):
    folder = towers["vit"][0]
    done = subprocess.run(
        [sys.executable, "-m", "core", "extract", "--model", str(folder), "--data", "demo:digits",
         "--pooling", "max", "--batch-size", "256", "--json", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["layers"] == DEFAULT_LAYERS["vit"] and summary["shape"] == [1797, 32]
    assert summary["pooling"] == "max"
