"""Activation extraction: hooks + pooling + batching, written straight to the store.

`extract(model, dataset, layers=..., pooling=...)` returns `Activations`; the same
request twice reads the store.

    extraction.py  extract(), the store key of a run, batching, resume, the finished entry
    feeders.py     tokenised text batches, or tensors from a model's own preprocess
    pooling.py     one vector per input from a layer's output (or every token)
    writer.py      preallocated .npy files filled row by row (flat memory)
    core/hooks.py  the hooks that capture layer outputs and inputs (shared with SAE splicing)
"""

from core.extract.extraction import extract, run_key
from core.extract.pooling import IMAGE_POOLINGS, POOLINGS, TOKEN_IMAGE_POOLINGS, pool
from core.hooks import capture_layers, run_captured
from core.progress import Progress

__all__ = ["IMAGE_POOLINGS", "POOLINGS", "TOKEN_IMAGE_POOLINGS", "Progress", "capture_layers", "extract", "pool", "run_captured", "run_key"]
