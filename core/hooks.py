"""Forward hooks on a model's own modules, attached in a context manager and always removed.

Models are shared (one cached copy serves every dashboard user), so a hook that outlives
its block would change everyone's results: both context managers remove their hooks in
`finally`, also when the forward raises. Layers are addressed by the model's module path
(`encoder.layer.3`, `model.layers.9`).

* `capture_layers` reads layer outputs (extraction, the logit lens);
* `replace_output` swaps one layer's output for another tensor (splicing an SAE in).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from core.errors import LayerscopeError


class StopForward(Exception):
    """Raised from a hook once every requested layer is captured: skips the rest of the model."""


def module_at(module: nn.Module, layer: str) -> nn.Module:
    """The submodule at path `layer` of `module`."""
    modules = dict(module.named_modules())
    if layer not in modules:
        raise LayerscopeError(f"layer {layer!r} is not a module of the model")
    return modules[layer]


def output_tensor(output: Any) -> torch.Tensor | None:
    """The hidden-state tensor of a module's output: itself, the first of a tuple/list, or last_hidden_state."""
    tensor = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(tensor, torch.Tensor):
        tensor = getattr(output, "last_hidden_state", None)
    return tensor if isinstance(tensor, torch.Tensor) else None


def with_tensor(output: Any, new: torch.Tensor) -> Any:
    """`output` with its hidden-state tensor replaced by `new` (the rest of a tuple/list kept)."""
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    return new


@contextlib.contextmanager
def capture_layers(
    module: nn.Module, layers: Sequence[str], on_output: Callable[[str, torch.Tensor], Any]
) -> Iterator[dict[str, Any]]:
    """Attach forward hooks to `layers`; `on_output(layer, tensor)` result lands in the dict.

    Hooks are removed when the block exits, also when the forward raises.
    Once all layers have fired, the hook raises `StopForward` so later
    layers are not computed; `run_captured` swallows it.
    """
    modules = dict(module.named_modules())
    captured: dict[str, Any] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            tensor = output_tensor(output)
            if tensor is None:
                raise LayerscopeError(f"layer {name!r} does not output a tensor; pick another layer")
            captured[name] = on_output(name, tensor.detach())
            if len(captured) == len(layers):
                raise StopForward

        return hook

    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def run_captured(forward: Callable[[], Any]) -> None:
    """Run `forward()` inside capture_layers, stopping quietly once every layer was captured."""
    with contextlib.suppress(StopForward):
        forward()


@contextlib.contextmanager
def replace_output(
    module: nn.Module, layer: str, replace: Callable[[torch.Tensor], torch.Tensor | None]
) -> Iterator[None]:
    """While the block runs, `layer`'s output tensor is replaced by `replace(hidden)` (None keeps it).

    hidden: the layer's output tensor, e.g. (batch, tokens, d); the replacement has its shape.
    """
    target = module_at(module, layer)

    def hook(_module, _inputs, output):
        hidden = output_tensor(output)
        if hidden is None:
            raise LayerscopeError(f"layer {layer!r} does not output a tensor; pick another layer")
        new = replace(hidden)
        return None if new is None else with_tensor(output, new)

    handle = target.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
