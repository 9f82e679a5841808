"""A 2-D map of an SAE's latents: their decoder directions projected with PCA or UMAP (cosine geometry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.analysis.features.stats import FEATURES_VERSION

if TYPE_CHECKING:
    from core.analysis.sae import StoredSAE
    from core.store import Store

DECODER_MAP_KIND = "sae_feature_map"


@dataclass(frozen=True, eq=False)
class DecoderMap:
    """(F, 2) coordinates of the latents' decoder directions."""

    coords: np.ndarray


def decoder_map(stored: StoredSAE, store: Store, *, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(F, 2) map of the latents' decoder directions (cosine geometry), PCA or UMAP, through the store."""
    from core.analysis.projection import project

    params = {"sae": stored.key, "method": method, "seed": seed, "version": FEATURES_VERSION}

    def compute() -> DecoderMap:
        W = stored.sae.W_dec.detach().cpu().numpy().astype(np.float64)  # (F, d_in)
        return DecoderMap(project(W, method, seed=seed, metric="cosine"))

    return np.asarray(store.cached(DECODER_MAP_KIND, params, compute, DecoderMap).coords)
