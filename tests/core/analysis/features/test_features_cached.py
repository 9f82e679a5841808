"""core.analysis.features.cached: statistics and matchings of stored SAEs through the store.

Results written in the workspace's result layout before the codec (arrays named by field,
scalars in meta.json) are read back instead of computed again.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from core.analysis.features import (
    FeatureMatching,
    feature_stats,
    feature_stats_cached,
    feature_stats_params,
    match_features_cached,
    matching_params,
    stored_feature_stats,
    stored_matching,
)
from core.analysis.sae import SAEConfig, train_sae_on_run
from core.store import Store, make_key
from features_helpers import LAYER


def test_feature_stats_cached__second_call_reads_the_store(labelled_run, tmp_path):
    acts, store = labelled_run
    entry = train_sae_on_run(acts, LAYER, SAEConfig(expansion=1.0, k=8, batch_size=64, training_tokens=64 * 10,
                                                    dead_window=500), store=store)
    assert stored_feature_stats(entry, store) is None
    calls = []
    first = feature_stats_cached(entry, acts, store, progress=lambda d, t, m: calls.append(d))
    assert calls and calls[-1] == first.n_tokens
    again = feature_stats_cached(entry, acts, store, progress=lambda d, t, m: calls.append("again"))
    assert "again" not in calls
    assert np.array_equal(again.top_rows, first.top_rows)
    assert again.labels["weather"].values == first.labels["weather"].values
    np.testing.assert_array_equal(again.labels["score"].correlation, first.labels["score"].correlation)


def _write_result_in_workspace_layout(store, kind, params, arrays, meta) -> None:
    """A result entry as the workspace holds it: results/<kind>/<key>/ with one .npy per array and meta.json."""
    folder = store.root / "results" / kind / make_key({"kind": kind, **params})
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.asarray(array), allow_pickle=False)
    checksums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    full = {"kind": kind, "params": params, "arrays": list(arrays), "created": "2026-01-02T03:04:05", **meta,
            "checksums": checksums}
    (folder / "meta.json").write_text(json.dumps(full))


def test_results_in_the_workspace_layout__are_read_without_computing(labelled_run, tmp_path):
    acts, run_store = labelled_run
    entry = train_sae_on_run(acts, LAYER, SAEConfig(expansion=1.0, k=4, batch_size=64, training_tokens=64 * 5,
                                                    dead_window=500, seed=7), store=run_store)
    store = Store(tmp_path / "ws")
    stats = feature_stats(entry.sae, acts, LAYER, sae_key=entry.key, top_k=20, n_samples=64)
    arrays = {name: getattr(stats, name) for name in (
        "density", "max_activation", "mean_activation", "top_rows", "top_values", "sample_rows", "sample_values",
        "hist_edges", "hist_counts")}
    labels = {}
    for i, (column, assoc) in enumerate(stats.labels.items()):
        labels[column] = {"kind": assoc.kind, "values": list(assoc.values), "index": i}
        if assoc.kind == "categorical":
            arrays[f"label{i}_tokens"], arrays[f"label{i}_fires"] = assoc.tokens_per_value, assoc.fires_per_value
        else:
            arrays[f"label{i}_correlation"] = assoc.correlation
    _write_result_in_workspace_layout(store, "sae_features", feature_stats_params(entry), arrays, {
        "sae_key": entry.key, "run_key": acts.key, "layer": LAYER, "n_tokens": stats.n_tokens, "labels": labels,
        "stats_params": stats.params})

    calls = []
    read = feature_stats_cached(entry, acts, store, progress=lambda d, t, m: calls.append(d))
    assert calls == [] and store.counts["sae_features", "hit"] == 1
    assert read.sae_key == entry.key and read.n_tokens == stats.n_tokens
    np.testing.assert_array_equal(read.top_rows, stats.top_rows)
    assert read.labels["weather"].values == stats.labels["weather"].values
    np.testing.assert_array_equal(read.labels["weather"].fires_per_value, stats.labels["weather"].fires_per_value)
    np.testing.assert_array_equal(read.labels["score"].correlation, stats.labels["score"].correlation)

    scalars = {"level": "tokens", "n_rows": 500, "mean_paired": 1.0, "mean_random": 0.01, "random_std": 0.002,
               "svcca_paired": float("nan"), "svcca_random": float("nan"), "rsa_paired": 0.9, "rsa_random": 0.0,
               "n_alive_a": 3, "n_alive_b": 3, "n_pairs": 3, "reasons": {"svcca": "too few pairs"},
               "params": {"seed": 0}}
    partner = np.array([2, 0, 1, -1])
    _write_result_in_workspace_layout(store, "sae_matching", matching_params(entry, entry), {
        "partner": partner, "correlation": np.array([1.0, 0.9, 0.8, np.nan]),
        "random_correlation": np.array([0.1, 0.0, -0.1, np.nan])}, {"matching": scalars})
    matching = stored_matching(entry, entry, store)
    assert isinstance(matching, FeatureMatching) and matching.sae_a == matching.sae_b == entry.key
    np.testing.assert_array_equal(matching.partner, partner)
    assert np.isnan(matching.svcca_paired) and matching.reasons == {"svcca": "too few pairs"}
    assert match_features_cached(entry, entry, acts, acts, store).rsa_paired == 0.9  # read, not computed
