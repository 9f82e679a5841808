"""Small SAEs and SAELens folders the SAE tests build (plain functions; fixtures are in conftest.py)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from core.analysis.sae import CFG_FILENAME, WEIGHTS_FILENAME, SparseAutoencoder

LAYER = "encoder.layer.3"
TINY = {"expansion": 2.0, "k": 16, "batch_size": 128, "lr": 2e-3, "dead_window": 2000}


def random_sae(d_in=8, d_sae=32, architecture="topk", k=4, seed=0) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(d_in, d_sae, architecture=architecture, k=k if architecture == "topk" else None)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return sae.eval()


def identity_sae(d: int) -> SparseAutoencoder:
    """A standard SAE that reconstructs exactly: relu(x) - relu(-x) = x."""
    sae = SparseAutoencoder(d, 2 * d, architecture="standard")
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae.eval()


def write_saelens_folder(folder, cfg, tensors):
    folder.mkdir(parents=True)
    (folder / CFG_FILENAME).write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS_FILENAME))
    return folder


def saelens_weights(d_in, d_sae, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.randn(d_sae, generator=g),
            "W_dec": torch.randn(d_sae, d_in, generator=g), "b_dec": torch.randn(d_in, generator=g), **extra}
