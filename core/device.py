"""Pick the torch device and dtype: CUDA when present, else CPU."""

from __future__ import annotations

import torch

from core.errors import LayerscopeError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given ("cpu", "cuda", "cuda:1"), else CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        picked = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise LayerscopeError(f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'auto'") from err
    if picked.type == "cuda" and not torch.cuda.is_available():
        raise LayerscopeError(f"device={device!r} was asked for but this machine has no CUDA GPU; use 'cpu'")
    return picked


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """float32 by default; float16/bfloat16 only on a GPU."""
    if dtype is None or dtype == "auto":
        return torch.float32
    if dtype not in DTYPES:
        raise LayerscopeError(f"dtype={dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    if dtype != "float32" and device.type != "cuda":
        raise LayerscopeError(f"dtype={dtype!r} needs a CUDA device; on {device.type} use 'float32'")
    return DTYPES[dtype]
