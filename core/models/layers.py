"""Layer discovery: every hookable module by its own path, and a default set.

The default set is the residual stream as Hugging Face's `output_hidden_states` returns it:
layer 0 is what the first block receives (`hidden_states[0]`), then every block of the
model's block list. Layer 0 is named after the input embedding (`embeddings` for BERT,
`model.embed_tokens` for Llama) when its output is exactly what the first block receives,
and `"<first block>:input"` otherwise: GPT-2, GPT-Neo and OPT add position embeddings after
the token embedding, T5 reads its embedding through its own copy of the module. Which of
the two holds is checked once at load by a forward pass on a few tokens (`checked_default_layers`);
the same check names a block's output `"<next block>:input"` when something joins the
stream between blocks (DeBERTa-v2's convolution after block 0). Plain modules get the
static set: embedding (if any) + blocks, or the children of an `nn.Sequential`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from core.errors import LayerscopeError
from core.hooks import INPUT_SUFFIX, capture_layers, run_captured, split_layer

logger = logging.getLogger(__name__)

LAYER_SETS = ("all", "default")
# config attributes holding a transformer's number of blocks (aliases such as GPT-2's n_layer map onto them)
_LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer")
_PROBE_TEXT = "Layerscope reads every layer of a model."


def hookable_layers(module: nn.Module, *, inputs: Sequence[str] = ()) -> list[str]:
    """Every named submodule path, in definition order; `path:input` names in `inputs` just before their module."""
    before: dict[str, list[str]] = {}
    for layer in inputs:
        path, is_input = split_layer(layer)
        if is_input:
            before.setdefault(path, []).append(layer)
    names = []
    for name, _ in module.named_modules():
        if name:
            names.extend(before.get(name, []))
            names.append(name)
    return names


def block_list(module: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """(path, list) of the model's blocks: a non-empty ModuleList, None when there is none.

    Lists as long as the config's number of layers come first (T5's blocks hold inner lists
    of sub-layers, composite models hold lists of other lengths), then the longest; ties go
    to the shallowest path, then to definition order.
    """
    lists = [(name, m) for name, m in module.named_modules() if name and isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        return None
    config = getattr(module, "config", None)
    counts = {getattr(config, key, None) for key in _LAYER_COUNT_KEYS} - {None}
    matching = [item for item in lists if len(item[1]) in counts]
    candidates = matching or lists
    order = {name: i for i, (name, _) in enumerate(candidates)}
    return min(candidates, key=lambda item: (-len(item[1]), item[0].count("."), order[item[0]]))


def default_layers(module: nn.Module) -> list[str]:
    """Input embedding (if any) + every block of the block list, without running the model."""
    found = block_list(module)
    if found:
        name, container = found
        blocks = [f"{name}.{i}" for i in range(len(container))]
    else:
        blocks = [name for name, _ in module.named_children()]
    embedding = input_embedding_path(module)
    return ([embedding] if embedding else []) + blocks


def checked_default_layers(module: nn.Module, run_forward: Callable[[], Any]) -> list[str]:
    """The default set, with layer 0 and each block's output checked by one forward pass.

    run_forward: runs `module` (or its base model) on a few inputs, in eval mode.
    Layer 0 is the input embedding when its output equals what the first block receives,
    else "<first block>:input"; block i's output is kept when it equals what block i + 1
    receives, else "<block i + 1>:input". When the forward fails, layer 0 is the first
    block's input (hidden_states[0] by Hugging Face's definition) and the blocks are kept.
    """
    found = block_list(module)
    if found is None:
        return default_layers(module)
    name, container = found
    blocks = [f"{name}.{i}" for i in range(len(container))]
    inputs = [f"{block}{INPUT_SUFFIX}" for block in blocks]
    embedding = input_embedding_path(module)
    watched = ([embedding] if embedding else []) + inputs + blocks
    try:
        with torch.inference_mode(), capture_layers(module, watched, lambda _name, tensor: tensor) as captured:
            run_captured(run_forward)
            seen = dict(captured)
    except Exception as err:  # noqa: BLE001 - any failure leaves the definition-based names
        logger.warning("could not run %s to check its layers (%s); layer 0 is %s", type(module).__name__, err, inputs[0])
        return [inputs[0], *blocks]

    def same(a: str, b: str) -> bool:
        return a in seen and b in seen and _equal(seen[a], seen[b])

    first = embedding if embedding and same(embedding, inputs[0]) else inputs[0]
    middle = [blocks[i] if same(blocks[i], inputs[i + 1]) else inputs[i + 1] for i in range(len(blocks) - 1)]
    return [first, *middle, blocks[-1]]


def text_default_layers(module: nn.Module, forward_module: nn.Module, tokenizer, *, causal: bool) -> list[str]:
    """checked_default_layers of a Hugging Face text model, run on one short sentence."""
    encoded = tokenizer(_PROBE_TEXT, return_tensors="pt")
    inputs = {key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded}
    kwargs = {"use_cache": False} if causal else {}
    return checked_default_layers(module, lambda: forward_module(**inputs, **kwargs))


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


def input_embedding_path(module: nn.Module) -> str | None:
    """Path of the input embedding (`get_input_embeddings()`), or of the BERT-style `*embeddings` module around it."""
    get = getattr(module, "get_input_embeddings", None)
    if get is None:
        return None
    try:
        embedding = get()
    except (NotImplementedError, AttributeError):
        return None
    path = next((name for name, m in module.named_modules() if m is embedding and name), None)
    if path is None:
        return None
    # BERT-style models sum word, position and type embeddings (then LayerNorm)
    # in a parent `embeddings` module whose output is hidden_states[0]
    parent = path.rsplit(".", 1)[0] if "." in path else None
    if parent and parent.split(".")[-1].endswith("embeddings"):
        return parent
    return path


def resolve_layers(
    module: nn.Module, layers, *, model_name: str = "model", defaults: Sequence[str] | None = None
) -> list[str]:
    """Turn "all"/"default", a comma-separated string or a list into layer names.

    A layer name is a module path (its output) or "<module path>:input" (what it receives).
    defaults: the model's default set (checked at load), else default_layers(module).
    """
    defaults = list(defaults) if defaults is not None else default_layers(module)
    if layers is None or (isinstance(layers, str) and layers in LAYER_SETS):
        return defaults
    if isinstance(layers, str):
        layers = [part.strip() for part in layers.split(",") if part.strip()]
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise LayerscopeError(f"layers={layers!r} is empty; give 'all' or module paths")
    known = set(hookable_layers(module))
    for layer in layers:
        if not isinstance(layer, str) or split_layer(layer)[0] not in known:
            shown = ", ".join(defaults[:4]) + (", ..." if len(defaults) > 4 else "")
            raise LayerscopeError(
                f"layer {layer!r} does not exist in {model_name}; use 'all', module paths or "
                f"'<module path>{INPUT_SUFFIX}' such as {shown} "
                f"(`python -m core layers --model {model_name}` lists all {len(known)})"
            )
    return layers
