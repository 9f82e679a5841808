"""Geometry of one layer: trajectory curvature, intrinsic dimension, matrix entropy,
effective rank and anisotropy, computed for every layer of a run.

Definitions follow /work/shared/METRICS.md, section "Geometry of one layer". One module
per concept: `curvature`, `intrinsic_dimension`, `spectrum` (matrix entropy, effective
rank, anisotropy), `entropy` (prompt entropy), `by_layer` (all layers of a run, cached in
the store). Pairwise distances and Gram eigenvalues run in torch (on CUDA when present);
spectra are computed in float64. Conventions of the reference code are named options:
matrix entropy `variant="skean"`, curvature `degenerate="zero"`; TwoNN removes duplicate
points and `GeometryResult.n_duplicates` counts them. `bootstrap` gives bands over resampled
inputs for intrinsic dimension, dataset entropy and effective rank (`geometry_bands`).
"""

from core.analysis.geometry.bootstrap import BAND_METRICS, GeometryBands, band_name, geometry_bands
from core.analysis.geometry.by_layer import DEFAULT_OPTIONS, GEOMETRY_VERSION, geometry_by_layer
from core.analysis.geometry.curvature import (
    CURVATURE_DEGENERATE,
    CURVATURE_VARIANTS,
    curvature,
    curvature_per_input,
    turning_angles,
)
from core.analysis.geometry.entropy import prompt_entropy
from core.analysis.geometry.intrinsic_dimension import ID_METHODS, MIN_ID_POINTS, distinct_rows, intrinsic_dimension
from core.analysis.geometry.result import (
    GEOMETRY_METRICS,
    METRIC_UNITS,
    PER_INPUT_METRICS,
    RESULT_METRICS,
    GeometryResult,
)
from core.analysis.geometry.spectrum import ENTROPY_VARIANTS, anisotropy, effective_rank, matrix_entropy

__all__ = [
    "BAND_METRICS",
    "CURVATURE_DEGENERATE",
    "CURVATURE_VARIANTS",
    "DEFAULT_OPTIONS",
    "ENTROPY_VARIANTS",
    "GEOMETRY_METRICS",
    "GEOMETRY_VERSION",
    "ID_METHODS",
    "METRIC_UNITS",
    "MIN_ID_POINTS",
    "PER_INPUT_METRICS",
    "RESULT_METRICS",
    "GeometryBands",
    "GeometryResult",
    "anisotropy",
    "band_name",
    "curvature",
    "curvature_per_input",
    "distinct_rows",
    "effective_rank",
    "geometry_bands",
    "geometry_by_layer",
    "intrinsic_dimension",
    "matrix_entropy",
    "prompt_entropy",
    "turning_angles",
]
