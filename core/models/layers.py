"""Layer discovery: every hookable module by its own path, and a default set.

The default set is the input embedding followed by each block of the model's
largest `nn.ModuleList` (the residual stream of a transformer: `embeddings`,
`encoder.layer.0` .. for BERT; `model.embed_tokens`, `model.layers.0` .. for
Llama), or the top-level children of a plain `nn.Sequential`.
"""

from __future__ import annotations

from torch import nn

from core.errors import LayerscopeError

LAYER_SETS = ("all", "default")


def hookable_layers(module: nn.Module) -> list[str]:
    """Every named submodule path, in definition order."""
    return [name for name, _ in module.named_modules() if name]


def default_layers(module: nn.Module) -> list[str]:
    """Input embedding (if any) + every block of the largest ModuleList."""
    modules = dict(module.named_modules())
    lists = [(name, m) for name, m in modules.items() if name and isinstance(m, nn.ModuleList) and len(m) > 0]
    if lists:
        name, container = max(lists, key=lambda item: len(item[1]))
        blocks = [f"{name}.{i}" for i in range(len(container))]
    else:
        blocks = [name for name, _ in module.named_children()]
    embedding = _input_embedding_path(module, modules)
    return ([embedding] if embedding else []) + blocks


def _input_embedding_path(module: nn.Module, modules: dict[str, nn.Module]) -> str | None:
    get = getattr(module, "get_input_embeddings", None)
    if get is None:
        return None
    try:
        embedding = get()
    except (NotImplementedError, AttributeError):
        return None
    path = next((name for name, m in modules.items() if m is embedding and name), None)
    if path is None:
        return None
    # BERT-style models sum word, position and type embeddings (then LayerNorm)
    # in a parent `embeddings` module whose output is hidden_states[0]
    parent = path.rsplit(".", 1)[0] if "." in path else None
    if parent and parent.split(".")[-1].endswith("embeddings"):
        return parent
    return path


def resolve_layers(module: nn.Module, layers, *, model_name: str = "model") -> list[str]:
    """Turn "all"/"default", a comma-separated string or a list into module paths."""
    if layers is None or (isinstance(layers, str) and layers in LAYER_SETS):
        return default_layers(module)
    if isinstance(layers, str):
        layers = [part.strip() for part in layers.split(",") if part.strip()]
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise LayerscopeError(f"layers={layers!r} is empty; give 'all' or module paths")
    known = set(hookable_layers(module))
    for layer in layers:
        if not isinstance(layer, str) or layer not in known:
            defaults = default_layers(module)
            shown = ", ".join(defaults[:4]) + (", ..." if len(defaults) > 4 else "")
            raise LayerscopeError(
                f"layer {layer!r} does not exist in {model_name}; use 'all' or module paths such as {shown} "
                f"(`python -m core layers --model {model_name}` lists all {len(known)})"
            )
    return layers
