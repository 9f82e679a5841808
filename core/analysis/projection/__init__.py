"""2-D maps of a layer (PCA, UMAP, t-SNE), aligned across layers, and how faithful they are.

`maps` maps one layer; `aligned` keeps each input in about the same place when a
layer slider moves; `faithfulness` says how much of the full-dimensional
neighbourhood structure a map keeps; `neighbours` finds the inputs nearest to one
input; `sampling` picks the rows to show; `warmup` pays umap-learn's compilation up
front; `cached` reads and writes maps of a run through the store.
"""

from core.analysis.projection.aligned import ALIGNED_METHODS, aligned_projection, procrustes_align
from core.analysis.projection.cached import PROJECTION_VERSION, aligned_projection_cached, projection_cached
from core.analysis.projection.faithfulness import (
    FAITHFULNESS_MAX_POINTS,
    TRUST_MAX_POINTS,
    MapFaithfulness,
    knn_overlap,
    map_faithfulness,
    trustworthiness,
)
from core.analysis.projection.maps import METHODS, METRICS, project
from core.analysis.projection.neighbours import nearest_neighbors
from core.analysis.projection.sampling import subsample_indices
from core.analysis.projection.warmup import preload_imports, warm_up_umap

__all__ = [
    "ALIGNED_METHODS",
    "FAITHFULNESS_MAX_POINTS",
    "METHODS",
    "METRICS",
    "PROJECTION_VERSION",
    "TRUST_MAX_POINTS",
    "MapFaithfulness",
    "aligned_projection",
    "aligned_projection_cached",
    "knn_overlap",
    "map_faithfulness",
    "nearest_neighbors",
    "preload_imports",
    "procrustes_align",
    "project",
    "projection_cached",
    "subsample_indices",
    "trustworthiness",
    "warm_up_umap",
]
