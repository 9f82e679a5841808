"""Similarity results stored before the result codec: `meta["result"]` + `matrix.npy`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.analysis.similarity.result import SimilarityResult


def read_legacy_result(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> SimilarityResult:
    """The SimilarityResult in an entry written with meta {"result": {...fields}} and a "matrix" array."""
    saved = dict(meta["result"])
    return SimilarityResult(
        matrix=np.array(arrays["matrix"]),
        layers_a=tuple(saved.pop("layers_a")),
        layers_b=tuple(saved.pop("layers_b")),
        reasons=tuple(tuple(r) for r in saved.pop("reasons")),
        **saved,
    )
