"""A run's tokens through an SAE a block at a time, so (tokens x latents) never sits in memory whole."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from core.analysis.sae import SparseAutoencoder, token_rows

if TYPE_CHECKING:
    from core.activations import Activations

BLOCK_ELEMENTS = 2**24  # (tokens x latents) floats encoded at once


def block_size(n_features: int, *, low: int = 256, high: int = 8192) -> int:
    """Tokens per block for an SAE of `n_features` latents."""
    return int(max(low, min(high, BLOCK_ELEMENTS // max(n_features, 1))))


def encode_rows(sae: SparseAutoencoder, values: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """(len(rows), F) latent activations of `values[rows]`."""
    out = []
    block = block_size(sae.d_sae)
    for start in range(0, rows.size, block):
        x = torch.from_numpy(np.asarray(values[rows[start : start + block]], dtype=np.float32)).to(device)
        out.append(sae.encode(x))
    return torch.cat(out)


def input_max(sae: SparseAutoencoder, acts: Activations, layer: str, exclude_first_token: bool,
              device: torch.device) -> torch.Tensor:
    """(n_inputs, F) each input's maximum activation of each latent."""
    rows = token_rows(acts, exclude_first_token=exclude_first_token)
    owner = torch.from_numpy(np.searchsorted(acts.offsets, rows, side="right") - 1).to(device)
    result = torch.zeros(acts.n_inputs, sae.d_sae, device=device)
    block = block_size(sae.d_sae)
    values = acts[layer]
    for start in range(0, rows.size, block):
        x = torch.from_numpy(np.asarray(values[rows[start : start + block]], dtype=np.float32)).to(device)
        index = owner[start : start + block, None].expand(-1, sae.d_sae)
        result.scatter_reduce_(0, index, sae.encode(x), reduce="amax")
    return result
