"""Geometry results in the store: one entry per key, read back, also when written by older code."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core import codec
from core.analysis.geometry import by_layer, geometry_by_layer
from core.errors import LayerscopeError
from core.store import Store


def test_geometry_by_layer__cached_in_store(tmp_path, rng, monkeypatch, tokens_run):
    acts, _ = tokens_run(tmp_path, rng)
    store = Store(tmp_path / "ws")
    first = geometry_by_layer(acts, ["curvature", "anisotropy"], store=store, curvature_variant="abs")
    monkeypatch.setattr(by_layer, "_compute_geometry", lambda *a, **k: pytest.fail("recomputed"))
    second = geometry_by_layer(acts, ["curvature", "anisotropy"], store=store, curvature_variant="abs")
    np.testing.assert_array_equal(first.mean["curvature"], second.mean["curvature"])
    assert second.reasons == first.reasons and second.params["curvature_variant"] == "abs"
    assert (second.mean["curvature"][:2] <= math.pi / 2).all()
    with pytest.raises(LayerscopeError, match="needs an Activations run"):
        geometry_by_layer({"a": rng.standard_normal((30, 4))}, ["effective_rank"], store=store)


def test_geometry_by_layer__counts_one_miss_then_hits(tmp_path, rng, tokens_run):
    acts, _ = tokens_run(tmp_path, rng)
    store = Store(tmp_path / "ws")
    first = geometry_by_layer(acts, ["effective_rank", "prompt_entropy"], store=store)
    reader = Store(store.root)  # as a new process would
    again = geometry_by_layer(acts, ["effective_rank", "prompt_entropy"], store=reader)
    assert store.counts["geometry", "miss"] == 1 and reader.counts["geometry", "hit"] == 1
    assert again.metrics == first.metrics and again.layer_names == first.layer_names
    np.testing.assert_array_equal(again.q75["prompt_entropy"], first.q75["prompt_entropy"])
    assert again.layer_reasons == first.layer_reasons and again.params == first.params


def test_geometry_by_layer__reads_an_entry_in_the_layout_before_the_codec(tmp_path, rng, monkeypatch, tokens_run):
    acts, _ = tokens_run(tmp_path, rng)
    store = Store(tmp_path / "ws")
    first = geometry_by_layer(acts, ["curvature", "anisotropy"], store=store)
    [entry] = (store.root / "results" / "geometry").iterdir()
    params = json.loads((entry / "meta.json").read_text())["params"]
    arrays = {f"{m}__{part}": getattr(first, part)[m] for m in first.metrics
              for part in ("mean", "q25", "q75", "n_skipped")}
    old_meta = {  # as the earlier code wrote it
        "layer_names": list(first.layer_names), "metrics": list(first.metrics), "reasons": first.reasons,
        "layer_reasons": {m: list(r) for m, r in first.layer_reasons.items()}, "result_params": first.params,
    }
    store.save_result("geometry", params, arrays, old_meta)
    monkeypatch.setattr(by_layer, "_compute_geometry", lambda *a, **k: pytest.fail("recomputed"))
    old = geometry_by_layer(acts, ["curvature", "anisotropy"], store=Store(store.root))
    assert old.metrics == first.metrics and old.layer_reasons == first.layer_reasons
    for m in first.metrics:
        np.testing.assert_array_equal(old.mean[m], first.mean[m])
        np.testing.assert_array_equal(old.n_skipped[m], first.n_skipped[m])


def test_geometry_by_layer__default_conventions_keep_their_key_and_others_get_their_own(tmp_path, rng, tokens_run):
    acts, _ = tokens_run(tmp_path, rng)
    store = Store(tmp_path / "ws")
    exact = geometry_by_layer(acts, ["dataset_entropy", "intrinsic_dimension"], store=store)
    skean = geometry_by_layer(acts, ["dataset_entropy", "intrinsic_dimension"], store=store, entropy_variant="skean")
    assert store.counts["geometry", "miss"] == 2
    keyed = {json.loads((e / "meta.json").read_text())["params"].get("entropy_variant", "unset")
             for e in (store.root / "results" / "geometry").iterdir()}
    assert keyed == {"unset", "skean"}  # the default stays out of the key: entries stored before it still match
    assert exact.params["entropy_variant"] == "exact" and skean.params["entropy_variant"] == "skean"
    assert not np.allclose(exact.mean["dataset_entropy"][:2], skean.mean["dataset_entropy"][:2])
    again = geometry_by_layer(acts, ["dataset_entropy", "intrinsic_dimension"], store=Store(store.root),
                              entropy_variant="skean")
    np.testing.assert_array_equal(again.mean["dataset_entropy"], skean.mean["dataset_entropy"])
    np.testing.assert_array_equal(again.n_duplicates, skean.n_duplicates)
    assert again.n_duplicates.dtype == np.int64 and again.params == skean.params


def test_geometry_by_layer__entry_stored_before_duplicates_were_counted_reads_as_not_counted(tmp_path, rng, tokens_run):
    acts, _ = tokens_run(tmp_path, rng)
    store = Store(tmp_path / "ws")
    first = geometry_by_layer(acts, ["intrinsic_dimension"], store=store)
    [entry] = (store.root / "results" / "geometry").iterdir()
    params = json.loads((entry / "meta.json").read_text())["params"]
    arrays, meta = codec.encode(first)
    del meta["fields"]["__fields__"]["n_duplicates"]  # as written before the field existed
    store.save_result("geometry", params, arrays, meta)
    reader = Store(store.root)
    old = geometry_by_layer(acts, ["intrinsic_dimension"], store=reader)
    assert reader.counts["geometry", "hit"] == 1 and old.n_duplicates is None
    np.testing.assert_array_equal(old.mean["intrinsic_dimension"], first.mean["intrinsic_dimension"])
