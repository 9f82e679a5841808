"""Pooling one layer's output to one vector per input (or keeping every token)."""

from __future__ import annotations

import torch

from core.errors import LayerscopeError
from core.validation import check_choice

POOLINGS = ("mean", "first", "last", "max", "tokens")
IMAGE_POOLINGS = ("mean", "max")  # models without a tokenizer: outputs are pooled over space or already vectors
TOKEN_IMAGE_POOLINGS = ("mean", "first", "max")  # vision transformers: "first" is the class token


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """Pool one layer's output to one vector per input.

    hidden: (batch, tokens, d), (batch, channels, H, W) or (batch, d)
    mask:   (batch, tokens) 1 for real tokens, 0 for padding (right-padded)
    returns (batch, d)
    """
    if hidden.ndim == 2:
        return hidden
    if hidden.ndim == 4:  # (batch, channels, H, W): pool over space
        flat = hidden.flatten(2)  # (batch, channels, H*W)
        return flat.mean(-1) if pooling == "mean" else flat.amax(-1)
    if hidden.ndim != 3:
        raise LayerscopeError(f"cannot pool an output of shape {tuple(hidden.shape)}; pick another layer")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    mask = mask.to(hidden.device).bool()
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.sum(1).long() - 1  # right padding: last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if pooling == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    check_choice("pooling", pooling, POOLINGS)
    raise AssertionError(pooling)
