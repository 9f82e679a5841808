"""Interventions: directions at a layer, steering along them, erasing a concept (METRICS.md, "Interventions").

    records.py     Direction, SteeringResult, ErasureResult (stored with the codec)
    directions.py  directions from class means, a probe, contrast pairs or an SAE decoder row
    stored.py      directions kept in the workspace, exported as safetensors
    erase.py       LEACE and mean-difference erasure, probed at the layer and later ones
"""

from core.interventions.directions import (
    contrast_pca_direction,
    make_direction,
    mean_difference_direction,
    probe_direction,
    sae_feature_direction,
)
from core.interventions.erase import AffineEraser, erase_concept
from core.interventions.records import (
    DIRECTION_VERSION,
    ERASERS,
    ERASURE_VERSION,
    POSITIONS,
    SOURCES,
    STEERING_VERSION,
    Direction,
    ErasureResult,
    SteeringResult,
)
from core.interventions.stored import export_direction, list_directions, load_direction, save_direction

__all__ = [
    "AffineEraser",
    "DIRECTION_VERSION",
    "ERASERS",
    "ERASURE_VERSION",
    "POSITIONS",
    "SOURCES",
    "STEERING_VERSION",
    "Direction",
    "ErasureResult",
    "SteeringResult",
    "contrast_pca_direction",
    "erase_concept",
    "export_direction",
    "list_directions",
    "load_direction",
    "make_direction",
    "mean_difference_direction",
    "probe_direction",
    "sae_feature_direction",
    "save_direction",
]
