"""A workspace written before results had one codec is read as it is: nothing is recomputed.

tests/fixtures/workspace_v1 holds a minilm per-token run of 48 demo sentences with a probe,
geometry, a similarity matrix, a PCA map, two SAEs, feature statistics and a matching, all
written by the earlier code (tests/fixtures/make_workspace_v1.py); expected.json holds the
values that code computed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.analysis.features import feature_stats_cached, match_features_cached
from core.analysis.geometry import geometry_by_layer
from core.analysis.probes import ProbeResult
from core.analysis.projection import projection_cached
from core.analysis.sae import list_saes, open_sae
from core.analysis.similarity import similarity_matrix
from core.store import Store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "workspace_v1"


@pytest.fixture()
def old(tmp_path):
    root = tmp_path / "workspace"
    shutil.copytree(FIXTURE, root)
    store = Store(root)
    expected = json.loads((root / "expected.json").read_text())
    return store, store.open_run(expected["run"]), expected


def _no_misses(store: Store) -> None:
    misses = {kind: n for (kind, what), n in store.counts.items() if what == "miss"}
    assert not misses, f"recomputed instead of read: {misses}"


def test_old_results__are_read_not_recomputed(old):
    store, acts, expected = old
    # probe results of PROBE_VERSION 1 are recomputed by probe_by_layer_cached; the stored entry stays readable
    probe_entry = json.loads(next((store.root / "results" / "probes").glob("*/meta.json")).read_text())
    probe = store.lookup("probes", probe_entry["params"], ProbeResult)
    np.testing.assert_allclose(probe.scores, expected["probes"]["scores"])
    assert probe.chance == pytest.approx(expected["probes"]["chance"])
    assert list(probe.layer_names) == expected["probes"]["layer_names"]

    geometry = geometry_by_layer(acts, ("curvature", "intrinsic_dimension", "dataset_entropy"), store=store)
    for metric, values in expected["geometry"].items():
        np.testing.assert_allclose(geometry.mean[metric], values)

    similarity = similarity_matrix(acts, acts, "linear_cka", store=store)
    np.testing.assert_allclose(similarity.matrix, expected["similarity"])

    coords = projection_cached(acts, "encoder.layer.3", "pca", store)
    np.testing.assert_allclose(coords, expected["projection"])
    assert store.counts["probes", "hit"] == store.counts["geometry", "hit"] == 1
    assert store.counts["similarity", "hit"] == store.counts["projection", "hit"] == 1
    _no_misses(store)


def test_old_saes__are_listed_opened_and_their_statistics_read(old):
    store, acts, expected = old
    assert sorted(entry["key"] for entry in list_saes(store)) == sorted(expected["saes"])
    sae_a, sae_b = (open_sae(store, key) for key in expected["saes"])
    assert sae_a.layer == "encoder.layer.3" and sae_a.run_key == acts.key
    stats = feature_stats_cached(sae_a, acts, store, top_k=5, n_samples=8)
    np.testing.assert_allclose(stats.density, expected["feature_density"])
    matching = match_features_cached(sae_a, sae_b, acts, acts, store, n_random=2)
    assert matching.partner.tolist() == expected["matching_partner"]
    assert matching.mean_paired == pytest.approx(expected["matching_mean_paired"])
    assert store.counts["sae_features", "hit"] == store.counts["sae_matching", "hit"] == 1
    _no_misses(store)
