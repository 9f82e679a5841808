"""Vision towers from Hugging Face folders: ViT and CLIP's image encoder, fed by the folder's image processor.

family (config model_type)   module that is run                      residual stream (default layers)
vit                          ViTModel                                embeddings, layers.0 .. layers.N-1
clip_vision_model            CLIPVisionModel                         pre_layrnorm, encoder.layers.0 .. N-1
clip                         CLIPModel.vision_model (a CLIPVisionModel; the text tower is not used)

Layer 0 and the blocks are checked by a forward pass at load (`residual_stream`).
Every layer outputs (batch, 1 + patches, d): the class token, then one row per patch. HF's
`hidden_states` are the input of the first block and each block's output; neither family
normalises `hidden_states[-1]`. ViT's final `layernorm` gives `last_hidden_state`; CLIP's
`post_layernorm` is applied to the class token only and gives `pooler_output`, (batch, d).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import torch
from torch import nn

from core.errors import LayerscopeError
from core.hooks import INPUT_SUFFIX, capture_layers, run_captured
from core.models import LoadedModel, _first_line, hf_model_from, weight_files_hash
from core.models.layers import checked_default_layers

# model_type -> how the family is named in descriptions and messages
VISION_FAMILIES = {
    "vit": "ViT",
    "clip_vision_model": "CLIP vision tower",
    "clip": "CLIP",
}
# the module whose output HF returns as hidden_states[0], where that is not the input embedding's
LAYER_ZERO = {"clip_vision_model": "pre_layrnorm", "clip": "pre_layrnorm"}
PROCESSOR_FILE = "preprocessor_config.json"
# any of these marks a folder that a tokenizer can be loaded from
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)


class ImageProcessorPreprocess:
    """PIL images -> {"pixel_values": (batch, 3, H, W)} through a Hugging Face image processor."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, images) -> dict[str, torch.Tensor]:
        # processors normalise three channels; grayscale and RGBA inputs are made RGB first
        rgb = [image.convert("RGB") for image in images]
        batch = self.processor(images=rgb, return_tensors="pt")
        return {"pixel_values": batch["pixel_values"].to(torch.float32)}  # (batch, 3, H, W)


def read_config(folder: Path) -> dict:
    """The folder's config.json as a dict ({} when it cannot be read)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def is_vision_folder(folder: Path) -> bool:
    """A vision family by its config, or an image-processor folder that holds no tokenizer."""
    if read_config(folder).get("model_type") in VISION_FAMILIES:
        return True
    has_tokenizer = any((folder / name).is_file() for name in TOKENIZER_FILES)
    return (folder / PROCESSOR_FILE).is_file() and not has_tokenizer


def load_vision_folder(folder: Path, *, trust_remote_code: bool = False) -> LoadedModel:
    """A LoadedModel for the vision tower in a Hugging Face folder, with its image processor."""
    from transformers import AutoImageProcessor

    config = read_config(folder)
    family = config.get("model_type")
    if family not in VISION_FAMILIES:
        supported = ", ".join(f"{name} ({label})" for name, label in VISION_FAMILIES.items())
        raise LayerscopeError(
            f"model folder {str(folder)!r} holds a {family!r} model with an input processor and no tokenizer; "
            f"image models are read from folders of these families only: {supported}"
        )
    label = VISION_FAMILIES[family]
    if not (folder / PROCESSOR_FILE).is_file():
        raise LayerscopeError(
            f"model folder {str(folder)!r} holds a {label} model ({family}) but no image processor config "
            f"({PROCESSOR_FILE}), so its inputs cannot be prepared; save the processor the model was trained "
            "with beside the weights (`AutoImageProcessor.from_pretrained(...).save_pretrained(folder)`)"
        )
    try:
        # the PIL backend whether or not torchvision is installed: the same pixels on every machine
        processor = AutoImageProcessor.from_pretrained(folder, backend="pil", trust_remote_code=trust_remote_code)
        module, note = _vision_module(folder, family, config, trust_remote_code)
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as err:
        # UnpicklingError: torch.load(weights_only=True) refused a checkpoint holding more than tensors
        raise LayerscopeError(
            f"could not load a {label} model from {str(folder)!r}: {_first_line(err)}"
        ) from err
    vision = module.config
    description = (
        f"{'ViT' if family == 'vit' else 'CLIP vision tower'} ({vision.num_hidden_layers} layers, "
        f"{vision.hidden_size} wide, {vision.image_size}px images in {vision.patch_size}px patches) "
        f"from {folder.name}{note}"
    )
    return LoadedModel(
        name=str(folder),
        module=module,
        modality="image",
        weights_hash=f"{weight_files_hash(folder)}-{_processor_hash(folder)}",
        preprocess=ImageProcessorPreprocess(processor),
        forward_module=module,
        description=description,
        checked_layers=residual_stream(module, family),
        token_outputs=True,
    )


def residual_stream(module: nn.Module, family: str) -> list[str]:
    """The default layers (HF's hidden_states), checked by one forward pass on a seeded random image.

    Layer 0 is named after the module that produces it (ViT's `embeddings`, CLIP's
    `pre_layrnorm`) when its output is what the first block receives.
    """
    config = module.config
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, config.num_channels, config.image_size, config.image_size, generator=generator)

    def forward() -> None:
        module(pixel_values=pixels)

    layers = checked_default_layers(module, forward)
    named = LAYER_ZERO.get(family)
    if named and layers[0].endswith(INPUT_SUFFIX):
        with torch.inference_mode(), capture_layers(module, [named, layers[0]], lambda _layer, t: t) as seen:
            run_captured(forward)
        if len(seen) == 2 and torch.equal(seen[named], seen[layers[0]]):
            layers[0] = named
    return layers


def _vision_module(folder: Path, family: str, config: dict, trust_remote_code: bool) -> tuple[nn.Module, str]:
    """The module to run and a note for the description, refusing checkpoints with missing weights."""
    architectures = config.get("architectures") or []
    options = {"trust_remote_code": trust_remote_code, "output_loading_info": True}
    note = ""
    if family == "vit":
        # ViTModel checkpoints carry a pooler; task models (ViTForImageClassification, ...) are built without one
        with_pooler = not architectures or "ViTModel" in architectures
        module, info = hf_model_from(folder, causal=False, add_pooling_layer=with_pooler, **options)
        if with_pooler and info["missing_keys"] and all(k.startswith("pooler.") for k in info["missing_keys"]):
            module, info = hf_model_from(folder, causal=False, add_pooling_layer=False, **options)
    elif family == "clip":
        full, info = hf_model_from(folder, causal=False, **options)  # CLIPModel
        module = full.vision_model
        note = "; the image encoder of a full CLIPModel, its text tower and projections are not used"
    elif "CLIPVisionModelWithProjection" in architectures:
        from transformers import CLIPVisionModelWithProjection

        full, info = CLIPVisionModelWithProjection.from_pretrained(folder, dtype=torch.float32, **options)
        module = full.vision_model
        note = "; its visual projection is not used"
    else:
        module, info = hf_model_from(folder, causal=False, **options)  # CLIPVisionModel
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise LayerscopeError(
            f"model folder {str(folder)!r} is not a complete {VISION_FAMILIES[family]} checkpoint: "
            f"{len(missing)} weights are missing ({shown}) and would be random"
        )
    return module, note


def _processor_hash(folder: Path) -> str:
    """sha256 prefix of the image processor config: a different resize or normalisation is a different model input."""
    return hashlib.sha256((folder / PROCESSOR_FILE).read_bytes()).hexdigest()[:8]
