"""SAE architectures, one file each, registered by name (see registry.py).

Trained here: ``topk`` and ``standard`` (ReLU + L1); loaded from SAELens folders: those two
and ``jumprelu``.
"""

# each module registers itself on import; the order is the order of menus (topk, the default, first)
from core.analysis.sae.architectures import topk  # noqa: F401
from core.analysis.sae.architectures import standard  # noqa: F401
from core.analysis.sae.architectures import jumprelu  # noqa: F401
from core.analysis.sae.architectures.base import Architecture, TrainingForward
from core.analysis.sae.architectures.registry import (
    architecture_class,
    loadable_architectures,
    register_architecture,
    trainable_architectures,
)

__all__ = [
    "Architecture",
    "TrainingForward",
    "architecture_class",
    "loadable_architectures",
    "register_architecture",
    "trainable_architectures",
]
