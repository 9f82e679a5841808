"""Aligned maps looked up in the store without computing: None when absent, the stored arrays when present."""

from __future__ import annotations

import numpy as np

from core.analysis.projection import aligned_projection_cached, cached
from core.analysis.projection.cached import aligned_projection_stored
from core.store import Store


def test_aligned_projection_stored__none_until_stored_then_the_cached_arrays(tmp_path, monkeypatch, write_run):
    rng = np.random.default_rng(3)
    acts = write_run(tmp_path / "run", {"a": rng.normal(size=(30, 5)), "b": rng.normal(size=(30, 5))})
    store = Store(tmp_path / "workspace")
    calls = []
    real = cached.aligned_projection
    monkeypatch.setattr(cached, "aligned_projection", lambda *a, **k: calls.append(1) or real(*a, **k))

    assert aligned_projection_stored(acts, ["a", "b"], "pca", store) is None
    assert not calls and not (store.root / "results").exists()  # a lookup computes and writes nothing
    computed = aligned_projection_cached(acts, ["a", "b"], "pca", store)
    read = aligned_projection_stored(acts, ["a", "b"], "pca", store)
    assert read is not None and len(read) == 2 and calls == [1]
    for got, expected in zip(read, computed):
        np.testing.assert_array_equal(got, expected)
    # every option is part of the key: other options, other layers or another method are not stored
    assert aligned_projection_stored(acts, ["a", "b"], "pca", store, seed=1) is None
    assert aligned_projection_stored(acts, ["b", "a"], "pca", store) is None
    assert aligned_projection_stored(acts, ["a", "b"], "umap", store) is None
