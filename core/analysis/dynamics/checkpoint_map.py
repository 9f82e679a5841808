"""One layer's 2-D map at every checkpoint, aligned across training so each input keeps about its place.

The checkpoints play the part the layers play in the explorer's aligned maps
(core.analysis.projection.aligned): PCA of the layer at each checkpoint, each map
Procrustes-aligned onto the previous checkpoint's, or AlignedUMAP over the checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.analysis.dynamics.result import DYNAMICS_VERSION, CheckpointMaps
from core.analysis.dynamics.series_runs import check_series_layer, open_runs
from core.progress import Progress
from core.validation import check_choice, check_int

if TYPE_CHECKING:
    from core.series import Series
    from core.store import Store

KIND = "dynamics_map"  # the store's folder for checkpoint maps


def checkpoint_maps(store: Store, series: Series, layer: str, *, method: str = "pca", seed: int = 0,
                    progress: Progress | None = None) -> CheckpointMaps:
    """`layer`'s aligned map at every checkpoint of `series`: coords (n_checkpoints, n_inputs, 2), through the store.

    method: "pca" (each checkpoint's PCA Procrustes-aligned onto the previous one, the first
    centred) or "umap" (AlignedUMAP with the identity relation between consecutive checkpoints).
    Per-token runs give each input's mean token vector. progress(done, total, what) counts checkpoints.
    """
    from core.analysis.projection.aligned import ALIGNED_METHODS, aligned_projection

    method = check_choice("method", method, ALIGNED_METHODS)
    layer = check_series_layer(series, layer)
    seed = check_int("seed", seed)
    runs = open_runs(store, series)
    params = {"series": series.key, "runs": list(series.run_keys), "layer": layer, "method": method,
              "seed": seed, "version": DYNAMICS_VERSION}

    def compute() -> CheckpointMaps:
        arrays = [np.asarray(acts.pooled(layer), dtype=np.float32) for acts in runs]  # each (n_inputs, d)
        maps = aligned_projection(arrays, method, seed=seed, progress=progress)
        return CheckpointMaps(layer=layer, method=method, series=series.key, steps=series.steps,
                              coords=np.stack(maps).astype(np.float32), params=params)

    return store.cached(KIND, params, compute, CheckpointMaps)
