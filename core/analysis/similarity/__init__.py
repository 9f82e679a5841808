"""Similarity of two representations of the same inputs, for every pair of layers.

Definitions follow /work/shared/METRICS.md, section "Comparing two representations".
Each metric takes X (n, d1) and Y (n, d2) with rows aligned by input (widths may differ)
and returns a Python float. One file per metric family registers its `Metric` records:

* `cka`: linear, debiased and RBF CKA (Kornblith et al. 2019);
* `knn`: mutual k-nearest neighbours (Huh et al. 2024);
* `cca`: SVCCA (Raghu et al. 2017);
* `rsa`: Spearman correlation of representational dissimilarity matrices;
* `procrustes`: orthogonal Procrustes distance (Ding et al. 2021).

Undefined values are never silent: the pair functions raise `LayerscopeError` naming the
problem (constant activations, k >= n, a trivially perfect SVCCA, ...); `similarity_matrix`
turns those into NaN plus a reason in `SimilarityResult.reasons`.

Calibration: `permutation_null` (rows of run B shuffled; null mean, std and p-value per cell)
and `bootstrap_similarity` (percentile intervals over inputs), in `null` and `bootstrap`.

Adding a metric: write one file that defines its pair function and calls
`register_metric(Metric(...))`, and import it below. (The attribute `rsa` of this package
is the function; the module is `core.analysis.similarity.rsa` in `sys.modules`.)
"""

# each family registers its metrics when imported: this order is the dropdown's order
from core.analysis.similarity.cka import debiased_cka, linear_cka, rbf_cka  # noqa: I001
from core.analysis.similarity.knn import mutual_knn
from core.analysis.similarity.cca import svcca
from core.analysis.similarity.rsa import rsa
from core.analysis.similarity.procrustes import orthogonal_procrustes_distance
from core.analysis.similarity.matrix import (
    DEFAULT_MAX_POINTS,
    SIMILARITY_VERSION,
    check_aligned_runs,
    similarity_matrix,
)
from core.analysis.similarity.registry import (
    DISTANCE_METRICS,
    METRIC_DEFAULTS,
    METRIC_NAMES,
    SIMILARITY_METRICS,
    Metric,
    check_metric,
    get_metric,
    metric_choices,
    metric_label,
    register_metric,
)
from core.analysis.similarity.result import (
    SimilarityResult,
    best_match_per_layer,
    best_pair,
    diagonal_on_relative_depth,
)
from core.analysis.similarity.calibration import BootstrapResult, NullResult
from core.analysis.similarity.null import permutation_null
from core.analysis.similarity.bootstrap import bootstrap_similarity

__all__ = [
    "DEFAULT_MAX_POINTS",
    "DISTANCE_METRICS",
    "METRIC_DEFAULTS",
    "METRIC_NAMES",
    "SIMILARITY_METRICS",
    "SIMILARITY_VERSION",
    "BootstrapResult",
    "Metric",
    "NullResult",
    "SimilarityResult",
    "best_match_per_layer",
    "best_pair",
    "bootstrap_similarity",
    "check_aligned_runs",
    "check_metric",
    "debiased_cka",
    "diagonal_on_relative_depth",
    "get_metric",
    "linear_cka",
    "metric_choices",
    "metric_label",
    "mutual_knn",
    "orthogonal_procrustes_distance",
    "permutation_null",
    "rbf_cka",
    "register_metric",
    "rsa",
    "similarity_matrix",
    "svcca",
]
