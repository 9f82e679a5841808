"""Maps of a run through the store: computed once, read back, older entries read as they are."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.projection import aligned_projection, aligned_projection_cached, cached, project, projection_cached
from core.errors import LayerscopeError
from core.store import Store


def test_projection_cached__second_call_reads_store(tmp_path, monkeypatch, write_run):
    rng = np.random.default_rng(10)
    acts = write_run(tmp_path / "run", {"a": rng.normal(size=(40, 6)), "b": rng.normal(size=(40, 6))})
    store = Store(tmp_path / "workspace")
    calls = {"aligned": 0, "project": 0}
    real_aligned, real_project = cached.aligned_projection, cached.project

    def counting_aligned(*args, **kwargs):
        calls["aligned"] += 1
        return real_aligned(*args, **kwargs)

    def counting_project(*args, **kwargs):
        calls["project"] += 1
        return real_project(*args, **kwargs)

    monkeypatch.setattr(cached, "aligned_projection", counting_aligned)
    monkeypatch.setattr(cached, "project", counting_project)
    first = aligned_projection_cached(acts, ["a", "b"], "pca", store)
    again = aligned_projection_cached(acts, ["a", "b"], "pca", store)
    assert calls["aligned"] == 1
    assert len(first) == 2 and first[0].shape == (40, 2)
    np.testing.assert_array_equal(first[1], again[1])
    one = projection_cached(acts, "b", "pca", store)
    calls_after_first = calls["project"]
    np.testing.assert_array_equal(one, projection_cached(acts, "b", "pca", store))
    assert calls["project"] == calls_after_first  # no recomputation
    assert store.counts["projection", "hit"] == 2 and store.counts["projection", "miss"] == 2
    assert not np.array_equal(one, projection_cached(acts, "b", "pca", store, seed=1, metric="cosine"))
    assert len(list((store.root / "results" / "projection").iterdir())) == 3
    with pytest.raises(LayerscopeError, match="'zz' not in run"):
        aligned_projection_cached(acts, ["a", "zz"], "pca", store)
    with pytest.raises(LayerscopeError, match="layer 'zz' is not in run"):
        projection_cached(acts, "zz", "pca", store)


def test_projection_cached__reads_entries_in_the_layout_before_the_codec(tmp_path, write_run):
    rng = np.random.default_rng(12)
    acts = write_run(tmp_path / "run", {"a": rng.normal(size=(30, 5)), "b": rng.normal(size=(30, 7))})
    store = Store(tmp_path / "workspace")
    common = {"run": acts.key, "seed": 0, "n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean",
              "library": cached._library_version("pca"), "version": 3}
    coords = project(acts.pooled("b"), "pca")
    one = {**common, "layer": "b", "aligned": False, "method": "pca", "n_components": 2, "perplexity": 30.0}
    store.save_result("projection", one, {"coords": coords}, {"layer": "b"})
    maps = aligned_projection([acts.pooled("a"), acts.pooled("b")], "pca")
    both = {**common, "layers": ["a", "b"], "aligned": True, "method": "pca", "n_components": 2}
    store.save_result("projection", both, {f"map{i:03d}": m for i, m in enumerate(maps)}, {"layers": ["a", "b"]})

    np.testing.assert_array_equal(projection_cached(acts, "b", "pca", store), coords)
    read = aligned_projection_cached(acts, ["a", "b"], "pca", store)
    assert len(read) == 2
    for got, expected in zip(read, maps):
        np.testing.assert_array_equal(got, expected)
    assert store.counts["projection", "hit"] == 2 and not store.counts["projection", "miss"]
