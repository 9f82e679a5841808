"""Architectures by name, as SAELens' `register_sae_class` keeps its SAE classes.

`register_architecture("topk", TopK)` makes the name usable in `SAEConfig(architecture=...)`
(when the class is trainable) and in SAELens folders read by `load_saelens`.
"""

from __future__ import annotations

from core.analysis.sae.architectures.base import Architecture
from core.errors import LayerscopeError

_ARCHITECTURES: dict[str, type[Architecture]] = {}


def register_architecture(name: str, cls: type[Architecture]) -> None:
    """Make architecture `name` available, implemented by `cls` (a subclass of Architecture)."""
    if not (isinstance(cls, type) and issubclass(cls, Architecture)):
        raise TypeError(f"cls={cls!r} must be a subclass of Architecture")
    cls.name = name
    _ARCHITECTURES[name] = cls


def architecture_class(name: str) -> type[Architecture]:
    """The class registered as `name`."""
    if name not in _ARCHITECTURES:
        raise LayerscopeError(
            f"architecture={name!r} is not supported; Layerscope reads {', '.join(loadable_architectures())}"
        )
    return _ARCHITECTURES[name]


def loadable_architectures() -> tuple[str, ...]:
    """Names of every registered architecture (all of them load from SAELens folders)."""
    return tuple(_ARCHITECTURES)


def trainable_architectures() -> dict[str, str]:
    """Name -> one-line description of the architectures Layerscope trains."""
    return {name: cls.description for name, cls in _ARCHITECTURES.items() if cls.trainable}
