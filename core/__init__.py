"""Layerscope core: what every layer of a neural network knows.

    import core
    model = core.load_model("minilm")
    data = core.load_dataset("demo:sentences")
    acts = core.extract(model, data, layers="all", pooling="mean")
    acts["encoder.layer.3"]          # (n_inputs, 384) memory-mapped array

`import core` loads torch; transformers loads on first use of a model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "load_model": "core.models",
    "LoadedModel": "core.models",
    "load_dataset": "core.data",
    "Dataset": "core.data",
    "Activations": "core.activations",
    "Store": "core.store",
    "LayerscopeError": "core.errors",
}

if TYPE_CHECKING:
    from core.activations import Activations
    from core.data import Dataset, load_dataset
    from core.errors import LayerscopeError
    from core.models import LoadedModel, load_model
    from core.store import Store


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")


# bound eagerly: importing the submodule core.extract would otherwise shadow the function
from core.extract import extract  # noqa: E402

__all__ = [*_EXPORTS, "extract", "__version__"]
