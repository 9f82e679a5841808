"""Training dynamics: every layer across the checkpoints of a series (core.series).

* `metric_by_checkpoint`: a per-layer metric (probe score, intrinsic dimension, entropy,
  effective rank, curvature) at every checkpoint, as a (n_checkpoints, n_layers) matrix;
* `similarity_to_final`: each layer's similarity to the final checkpoint's same layer
  (linear CKA, mutual k-NN, SVCCA, ...), the bottom-up convergence of Raghu et al. 2017;
* `checkpoint_maps`: one layer's 2-D map at every checkpoint, aligned across training.

Each checkpoint's numbers come from the single-run analyses through the store, and the
assembled results are stored too, so a second call reads them back.
"""

from core.analysis.dynamics.by_checkpoint import LAYER_METRICS, TOKEN_METRICS, check_layer_metric, metric_by_checkpoint
from core.analysis.dynamics.checkpoint_map import checkpoint_maps
from core.analysis.dynamics.result import DYNAMICS_VERSION, CheckpointMaps, DynamicsResult
from core.analysis.dynamics.to_final import TO_FINAL_METRICS, similarity_to_final, steps_to_reach

__all__ = [
    "DYNAMICS_VERSION",
    "LAYER_METRICS",
    "TOKEN_METRICS",
    "TO_FINAL_METRICS",
    "CheckpointMaps",
    "DynamicsResult",
    "check_layer_metric",
    "checkpoint_maps",
    "metric_by_checkpoint",
    "similarity_to_final",
    "steps_to_reach",
]
