"""similarity_matrix: cells, symmetry, memory groups, NaN reasons, subsampling and run checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.analysis.similarity import (
    METRIC_DEFAULTS,
    SIMILARITY_METRICS,
    get_metric,
    linear_cka,
    matrix,
    similarity_matrix,
)
from core.errors import LayerscopeError

CKA_METRICS = ("linear_cka", "debiased_cka", "rbf_cka")


@pytest.mark.parametrize("metric", list(SIMILARITY_METRICS))
def test_similarity_matrix__cells_equal_the_pair_functions(rng, metric, toy_layers):
    A, B = toy_layers(rng), toy_layers(rng, widths=(5, 20))
    params = {"k": 5} if metric == "mutual_knn" else {"variance": 0.9} if metric == "svcca" else {}
    result = similarity_matrix(A, B, metric, **params)
    assert result.matrix.shape == (3, 2) and result.layers_a == tuple(A) and result.layers_b == tuple(B)
    fn = SIMILARITY_METRICS[metric][0]
    expected = [[fn(A[a], B[b], **params) for b in B] for a in A]
    np.testing.assert_allclose(result.matrix, expected, atol=1e-10)
    assert result.reasons == () and result.n == 60 and result.params == {**METRIC_DEFAULTS[metric], **params}


@pytest.mark.parametrize("metric", CKA_METRICS)
def test_similarity_matrix__run_against_itself_has_unit_cka_diagonal(rng, metric, toy_layers):
    A = toy_layers(rng, widths=(8, 70, 16))  # one layer wider than n: reduced to n columns
    result = similarity_matrix(A, A, metric)
    np.testing.assert_allclose(np.diag(result.matrix), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.matrix, result.matrix.T, atol=1e-12)
    assert (result.matrix[~np.eye(3, dtype=bool)] < 1.0 - 1e-6).all()


@pytest.mark.parametrize("metric", ["linear_cka", "rsa", "mutual_knn"])
def test_similarity_matrix__layers_beyond_the_memory_budget_give_the_same_matrix(rng, monkeypatch, metric, toy_layers):
    A, B = toy_layers(rng, widths=(6, 9, 12, 5)), toy_layers(rng, widths=(7, 8, 3))
    whole = similarity_matrix(A, B, metric)
    monkeypatch.setattr(matrix, "PREPARED_BYTES", 2 * get_metric(metric).prepared_bytes(60, 12, {"k": 10}))
    np.testing.assert_allclose(similarity_matrix(A, B, metric).matrix, whole.matrix, atol=1e-12)
    np.testing.assert_allclose(similarity_matrix(A, A, metric).matrix, similarity_matrix(A, dict(A), metric).matrix,
                               atol=1e-12)


@pytest.mark.parametrize("metric", list(SIMILARITY_METRICS))
def test_similarity_matrix__constant_layer_is_nan_with_reason(rng, metric, toy_layers):
    A = toy_layers(rng)
    A["layer1"] = np.ones((60, 12))
    result = similarity_matrix(A, A, metric, **({"k": 5} if metric == "mutual_knn" else {}))
    nan = np.isnan(result.matrix)
    assert nan[1].all() and nan[:, 1].all()
    assert not nan[np.ix_([0, 2], [0, 2])].any()
    assert "layer layer1 is constant" in result.reason_at(1, 0) and "constant" in result.reason_at(2, 1)
    assert result.reason_at(0, 2) is None


def test_similarity_matrix__too_few_inputs_is_nan_with_reason(rng, toy_layers):
    A = toy_layers(rng, n=8)
    result = similarity_matrix(A, A, "mutual_knn")
    assert np.isnan(result.matrix).all()
    assert "k=10 must be smaller than the number of inputs n=8" in result.reason_at(0, 0)
    svcca_result = similarity_matrix(A, A, "svcca")  # 8 inputs: the kept directions cannot be disjoint
    assert np.isnan(svcca_result.matrix[0, 1]) and "span only 7" in svcca_result.reason_at(0, 1)
    assert "span only 7" in svcca_result.reason_at(1, 0)


def test_similarity_matrix__subsamples_with_seed_and_records_it(rng, toy_layers):
    A, B = toy_layers(rng, n=300), toy_layers(rng, n=300)
    result = similarity_matrix(A, B, "linear_cka", max_points=100, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(300, 100, replace=False))
    assert result.matrix[1, 2] == pytest.approx(linear_cka(A["layer1"][rows], B["layer2"][rows]), abs=1e-12)
    assert (result.n, result.n_inputs, result.seed, result.max_points) == (100, 300, 3, 100)
    assert similarity_matrix(A, B, "linear_cka", max_points=None).n == 300


def test_similarity_matrix__mismatched_runs_raise(tmp_path, rng, toy_layers, write_run):
    from core.data import fingerprint_table

    table = pd.DataFrame({"text": ["a", "b", "c"]})
    assert fingerprint_table(table) != fingerprint_table(table.iloc[::-1].reset_index(drop=True))  # order counts
    A = toy_layers(rng)
    run = write_run(tmp_path / "a", A, fingerprint="fp0")
    other_rows = write_run(tmp_path / "b", A, fingerprint="fp1", model="other")
    with pytest.raises(LayerscopeError, match="fp0.*fp1.*same inputs in the same order"):
        similarity_matrix(run, other_rows)
    no_fingerprint = write_run(tmp_path / "c", A, fingerprint=None)
    with pytest.raises(LayerscopeError, match="has no dataset fingerprint"):
        similarity_matrix(run, no_fingerprint)
    with pytest.raises(LayerscopeError, match="run A has 60 inputs but run B has 59"):
        similarity_matrix(A, {k: v[:59] for k, v in A.items()})
    with pytest.raises(LayerscopeError, match="not one of each"):
        similarity_matrix(run, A)
    with pytest.raises(LayerscopeError, match="layers_b=.*'nope'"):
        similarity_matrix(A, A, layers_b=["nope"])


def test_similarity_matrix__tokens_run_compares_by_token_means(tmp_path, rng, toy_layers, write_run):
    lengths = rng.integers(1, 6, size=60)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = {"t0": rng.standard_normal((offsets[-1], 5)), "t1": rng.standard_normal((offsets[-1], 7))}
    tokens_run = write_run(tmp_path / "tok", tokens, pooling="tokens", offsets=offsets)
    pooled = {name: tokens_run.pooled(name) for name in tokens}
    pooled_run = write_run(tmp_path / "pool", toy_layers(rng), model="other")
    result = similarity_matrix(tokens_run, pooled_run, "linear_cka")
    other = {name: np.load(tmp_path / "pool" / f) for name, f in pooled_run.meta["layer_files"].items()}
    expected = similarity_matrix(pooled, other)
    np.testing.assert_allclose(result.matrix, expected.matrix, atol=1e-12)
    assert result.info["model_a"] == "toy" and result.info["model_b"] == "other"


def test_similarity_matrix__reports_progress_up_to_every_cell(rng, toy_layers):
    calls = []
    similarity_matrix(toy_layers(rng), toy_layers(rng, widths=(4, 5)), "rsa", progress=lambda *c: calls.append(c))
    assert calls[-1][:2] == (6, 6)
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)


def test_similarity_matrix__minilm_matches_itself_and_not_its_reinitialised_twin(session_store, minilm):
    import core

    data = core.load_dataset("demo:sentences", limit=80)
    trained = core.extract(minilm, data, layers="all", pooling="mean", store=session_store)
    untrained = core.extract(core.load_model("minilm", reinit=True, seed=0, device="cpu"), data, layers="all",
                             pooling="mean", store=session_store)
    itself = similarity_matrix(trained, trained, "linear_cka", store=session_store)
    np.testing.assert_allclose(np.diag(itself.matrix), 1.0, atol=1e-12)
    assert itself.best_match() == tuple(trained.layer_names)
    versus = similarity_matrix(trained, untrained, "linear_cka", store=session_store)
    assert versus.matrix.shape == (len(trained.layer_names), len(untrained.layer_names))
    assert np.isfinite(versus.matrix).all()
    assert versus.matrix[-1, -1] < 0.9
    assert versus.diagonal_on_relative_depth() < itself.diagonal_on_relative_depth() == pytest.approx(1.0)
    knn = similarity_matrix(trained, untrained, "mutual_knn", store=session_store)
    assert knn.matrix[-1, -1] < 0.9
