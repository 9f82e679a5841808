"""Forward hooks on a model's own modules, attached in a context manager and always removed.

Models are shared (one cached copy serves every dashboard user), so a hook that outlives
its block would change everyone's results: both context managers remove their hooks in
`finally`, also when the forward raises. Layers are addressed by the model's module path
(`encoder.layer.3`, `model.layers.9`) for a module's output, or by `"<module path>:input"`
(`transformer.h.0:input`) for what a module receives: its first positional argument or its
`hidden_states` keyword, read by a forward pre-hook. The input of a model's first block is
what Hugging Face returns as `hidden_states[0]`, position embeddings and scaling included.

* `capture_layers` reads layer outputs or inputs (extraction, the logit lens, layer discovery);
* `replace_output` swaps one layer's tensor for another (splicing an SAE in).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from core.errors import LayerscopeError

INPUT_SUFFIX = ":input"


class StopForward(Exception):
    """Raised from a hook once every requested layer is captured: skips the rest of the model."""


def split_layer(layer: str) -> tuple[str, bool]:
    """(module path, True when the layer is that module's input) of a layer name."""
    if layer.endswith(INPUT_SUFFIX):
        return layer[: -len(INPUT_SUFFIX)], True
    return layer, False


def module_at(module: nn.Module, layer: str) -> nn.Module:
    """The submodule a layer name (`path` or `path:input`) of `module` hooks."""
    path, _ = split_layer(layer)
    modules = dict(module.named_modules())
    if not path or path not in modules:
        raise LayerscopeError(f"layer {layer!r} is not a module of the model")
    return modules[path]


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


def input_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The hidden-state tensor a module receives: its first positional argument, else `hidden_states=`."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    tensor = kwargs.get("hidden_states")
    return tensor if isinstance(tensor, torch.Tensor) else None


def with_input(args: tuple, kwargs: dict, new: torch.Tensor) -> tuple[tuple, dict]:
    """(args, kwargs) with the hidden-state tensor input_tensor() found replaced by `new`."""
    if args and isinstance(args[0], torch.Tensor):
        return (new, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": new}


def _no_tensor(layer: str) -> LayerscopeError:
    _, is_input = split_layer(layer)
    what = "receive a tensor as its first argument or hidden_states" if is_input else "output a tensor"
    return LayerscopeError(f"layer {layer!r} does not {what}; pick another layer")


def _attach(target: nn.Module, layer: str, on_tensor: Callable[[torch.Tensor], Any]):
    """A hook handle calling `on_tensor(tensor)` with the layer's output (or input); its result replaces it."""
    _, is_input = split_layer(layer)
    if is_input:

        def pre_hook(_module, args, kwargs):
            tensor = input_tensor(args, kwargs)
            if tensor is None:
                raise _no_tensor(layer)
            new = on_tensor(tensor)
            return None if new is None else with_input(args, kwargs, new)

        return target.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(_module, _inputs, output):
        tensor = output_tensor(output)
        if tensor is None:
            raise _no_tensor(layer)
        new = on_tensor(tensor)
        return None if new is None else with_tensor(output, new)

    return target.register_forward_hook(hook)


@contextlib.contextmanager
def capture_layers(
    module: nn.Module, layers: Sequence[str], on_output: Callable[[str, torch.Tensor], Any]
) -> Iterator[dict[str, Any]]:
    """Attach hooks to `layers` (outputs, or inputs for `path:input`); `on_output(layer, tensor)` lands in the dict.

    Hooks are removed when the block exits, also when the forward raises.
    Once all layers have fired, the hook raises `StopForward` so later
    layers are not computed; `run_captured` swallows it.
    """
    targets = [module_at(module, layer) for layer in layers]
    captured: dict[str, Any] = {}
    handles = []

    def make_hook(name: str) -> Callable[[torch.Tensor], None]:
        def on_tensor(tensor: torch.Tensor) -> None:
            captured[name] = on_output(name, tensor.detach())
            if len(captured) == len(layers):
                raise StopForward

        return on_tensor

    try:
        for name, target in zip(layers, targets):
            handles.append(_attach(target, name, make_hook(name)))
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
    """While the block runs, `layer`'s tensor is replaced by `replace(hidden)` (None keeps it).

    hidden: the layer's output tensor (or, for `path:input`, the tensor the module receives),
    e.g. (batch, tokens, d); the replacement has its shape.
    """
    handle = _attach(module_at(module, layer), layer, replace)
    try:
        yield
    finally:
        handle.remove()
