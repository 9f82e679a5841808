"""A 2-D map of an SAE's latents: their decoder directions projected with PCA or UMAP (cosine geometry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.analysis.features.stats import FEATURES_VERSION
from core.progress import Progress, report

if TYPE_CHECKING:
    from core.analysis.sae import StoredSAE
    from core.store import Store

DECODER_MAP_KIND = "sae_feature_map"


@dataclass(frozen=True, eq=False)
class DecoderMap:
    """(F, 2) coordinates of the latents' decoder directions."""

    coords: np.ndarray


def decoder_map(stored: StoredSAE, store: Store, *, method: str = "pca", seed: int = 0,
                progress: Progress | None = None) -> np.ndarray:
    """(F, 2) map of the latents' decoder directions (cosine geometry), PCA or UMAP, through the store.

    progress hears of the fit (one step) only when it is computed.
    """
    from core.analysis.projection import project

    params = {"sae": stored.key, "method": method, "seed": seed, "version": FEATURES_VERSION}

    def compute() -> DecoderMap:
        W = stored.sae.W_dec.detach().cpu().numpy().astype(np.float64)  # (F, d_in)
        report(progress, 0, 1, f"{method.upper()} of {len(W):,} decoder directions (one fit: no iterations are "
               "reported)")
        return DecoderMap(project(W, method, seed=seed, metric="cosine"))

    return np.asarray(store.cached(DECODER_MAP_KIND, params, compute, DecoderMap).coords)
