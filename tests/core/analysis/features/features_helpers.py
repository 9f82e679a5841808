"""Random SAEs and brute-force encodings the feature tests compare against (fixtures are in conftest.py)."""

from __future__ import annotations

import numpy as np
import torch

from core.analysis.sae import SparseAutoencoder

LAYER = "encoder.layer.2"


def random_sae(d_in=384, d_sae=96, k=6, seed=0) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(d_in, d_sae, architecture="topk", k=k)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in) / d_in**0.5)
        sae.b_dec.zero_()
        sae.b_enc.zero_()
    return sae.eval()


def all_acts(sae, acts, rows) -> np.ndarray:
    """(len(rows), F) activations of every token row, encoded at once."""
    with torch.no_grad():
        return sae.encode(torch.from_numpy(np.asarray(acts[LAYER][rows], dtype=np.float32))).numpy()
