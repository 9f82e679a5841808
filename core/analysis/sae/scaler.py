"""Activation normalisation: the training-time input scale and the run-time modes SAELens SAEs use.

Training scales inputs so that their mean norm is sqrt(d_in) (SAELens'
``normalize_activations="expected_average_only_in"``); the factor is folded into the weights
afterwards (`SparseAutoencoder.fold_scaling_factor`), so a saved SAE takes raw activations.
SAEs loaded from SAELens may instead normalise every input at run time
(``constant_norm_rescale``, ``layer_norm``), undone on the reconstruction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from core.errors import LayerscopeError

NORMALIZATIONS = ("expected_average_only_in", "none")  # choices when training
RUNTIME_NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")


def expected_average_scale(first: Sequence[torch.Tensor], d_in: int, mode: str) -> float:
    """The factor s that gives the (batch, d_in) batches `first` a mean norm of sqrt(d_in); 1 for mode "none"."""
    if mode == "none":
        return 1.0
    norms = torch.cat([b.float().norm(dim=1) for b in first])
    norms = norms[torch.isfinite(norms)]
    mean = float(norms.mean()) if norms.numel() else 0.0
    if not mean > 0:
        raise LayerscopeError("the activations are all zero (or not finite); there is nothing for an SAE to learn")
    return math.sqrt(d_in) / mean


def normalise_in(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, Any]:
    """(n, d) inputs normalised by a run-time mode, and the state `normalise_out` needs to undo it."""
    if mode == "constant_norm_rescale":
        coeff = x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return x * coeff, coeff
    if mode == "layer_norm":
        mu = x.mean(dim=-1, keepdim=True)
        std = (x - mu).std(dim=-1, keepdim=True)
        return (x - mu) / (std + 1e-5), (mu, std)
    return x, None  # "none", and "expected_average_only_in" whose factor is folded into the weights


def normalise_out(x: torch.Tensor, mode: str, state: Any) -> torch.Tensor:
    """Undo `normalise_in` on a (n, d) reconstruction."""
    if mode == "constant_norm_rescale":
        return x / state
    if mode == "layer_norm":
        mu, std = state
        return x * std + mu
    return x
