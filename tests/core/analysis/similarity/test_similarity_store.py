"""Similarity results in the store: one entry per key, read back, also when written by older code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.analysis.similarity import SimilarityResult, matrix, similarity_matrix
from core.errors import LayerscopeError
from core.store import Store


def test_similarity_matrix__cached_in_store(tmp_path, rng, monkeypatch, toy_layers, write_run):
    A, B = toy_layers(rng), toy_layers(rng)
    run_a, run_b = write_run(tmp_path / "a", A), write_run(tmp_path / "b", B, model="other")
    store = Store(tmp_path / "ws")
    first = similarity_matrix(run_a, run_b, "mutual_knn", store=store, k=5)
    monkeypatch.setattr(matrix, "_compute", lambda *a, **k: pytest.fail("recomputed"))
    second = similarity_matrix(run_a, run_b, "mutual_knn", store=store, k=5)
    assert isinstance(second, SimilarityResult)
    np.testing.assert_array_equal(first.matrix, second.matrix)
    assert second.params == {"k": 5, "clip_quantile": None} and second.run_a == run_a.key
    assert second.label == first.label == "mutual k-NN (k=5, no clipping)"
    with pytest.raises(pytest.fail.Exception):
        similarity_matrix(run_a, run_b, "mutual_knn", store=store, k=6)  # another key: computed again
    with pytest.raises(LayerscopeError, match="needs Activations runs"):
        similarity_matrix(A, B, store=store)


def test_similarity_matrix__counts_one_miss_then_hits(tmp_path, rng, toy_layers, write_run):
    run_a, run_b = write_run(tmp_path / "a", toy_layers(rng)), write_run(tmp_path / "b", toy_layers(rng), model="other")
    store = Store(tmp_path / "ws")
    first = similarity_matrix(run_a, run_b, "rsa", store=store)
    reader = Store(store.root)  # as a new process would
    again = similarity_matrix(run_a, run_b, "rsa", store=reader)
    assert store.counts["similarity", "miss"] == 1 and store.counts["similarity", "hit"] == 0
    assert reader.counts["similarity", "hit"] == 1 and reader.counts["similarity", "miss"] == 0
    np.testing.assert_array_equal(again.matrix, first.matrix)
    assert again.reasons == first.reasons and again.layers_a == first.layers_a and again.max_points == 5000


def test_similarity_matrix__reads_an_entry_in_the_layout_before_the_codec(tmp_path, rng, monkeypatch, toy_layers,
                                                                           write_run):
    run_a, run_b = write_run(tmp_path / "a", toy_layers(rng)), write_run(tmp_path / "b", toy_layers(rng), model="other")
    store = Store(tmp_path / "ws")
    first = similarity_matrix(run_a, run_b, "mutual_knn", store=store, k=5)
    [entry] = (store.root / "results" / "similarity").iterdir()
    params = json.loads((entry / "meta.json").read_text())["params"]
    old_meta = {"result": {  # the fields as the earlier code wrote them, lists for tuples
        "metric": first.metric, "params": first.params, "layers_a": list(first.layers_a),
        "layers_b": list(first.layers_b), "run_a": first.run_a, "run_b": first.run_b, "n": first.n,
        "n_inputs": first.n_inputs, "seed": first.seed, "max_points": first.max_points,
        "reasons": [list(r) for r in first.reasons], "info": first.info,
    }}
    store.save_result("similarity", params, {"matrix": first.matrix}, old_meta)
    monkeypatch.setattr(matrix, "_compute", lambda *a, **k: pytest.fail("recomputed"))
    old = similarity_matrix(run_a, run_b, "mutual_knn", store=Store(store.root), k=5)
    np.testing.assert_array_equal(old.matrix, first.matrix)
    assert old.layers_a == first.layers_a and old.params == first.params and old.label == first.label
