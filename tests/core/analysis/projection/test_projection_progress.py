"""A layer's map tells its progress callback what it fits, only when it is not stored yet."""

from __future__ import annotations

import numpy as np

from core.analysis.projection import projection_cached
from core.store import Store


def test_projection_cached__names_the_fit_when_computed_and_only_finishes_when_stored(tmp_path, write_run):
    rng = np.random.default_rng(4)
    acts = write_run(tmp_path / "run", {"a": rng.normal(size=(25, 6))})
    store = Store(tmp_path / "workspace")
    first, again = [], []
    projection_cached(acts, "a", "pca", store, progress=lambda *call: first.append(call))
    projection_cached(acts, "a", "pca", store, progress=lambda *call: again.append(call))
    assert first[0] == (0, 1, "fitting PCA to 25 inputs of 6 dimensions (one step: no iterations are reported)")
    assert first[-1][:2] == (1, 1) and len(first) == 2
    assert again == [(1, 1, "map ready")]  # read back: nothing for a bar to show
