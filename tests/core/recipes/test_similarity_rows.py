"""Compare's similarity of two runs with rows of inputs or of tokens (core/recipes/similarity.py), on minilm runs."""

from __future__ import annotations

import numpy as np
import pytest

import core
from core.analysis.similarity import linear_cka, similarity_matrix
from core.errors import LayerscopeError
from core.export import figure_spec
from core.recipes import build_figure
from core.recipes.similarity import similarity_of_runs
from core.store import Store

LAYERS = ["embeddings", "encoder.layer.2", "encoder.layer.5"]


@pytest.fixture(scope="module")
def token_runs(minilm, tmp_path_factory):
    """minilm per-token and mean on 16 sentences, its per-token untrained twin, and a per-token run cut at 8 tokens."""
    store = Store(tmp_path_factory.mktemp("similarity_rows_ws"))
    data = core.load_dataset("demo:sentences", limit=16)
    twin = core.load_model("minilm", reinit=True, seed=0, device="cpu")
    runs = {
        "tokens": core.extract(minilm, data, layers=LAYERS, pooling="tokens", store=store),
        "mean": core.extract(minilm, data, layers=LAYERS, pooling="mean", store=store),
        "twin": core.extract(twin, data, layers=LAYERS, pooling="tokens", store=store),
        "short": core.extract(minilm, data, layers=LAYERS, pooling="tokens", max_length=8, store=store),
    }
    return store, runs


def test_token_rows__match_the_metric_on_every_token_and_are_stored(token_runs):
    store, runs = token_runs
    a, b = runs["tokens"], runs["twin"]
    result = similarity_of_runs(store, a, b, "linear_cka", {}, rows="tokens")
    n_tokens = int(a.offsets[-1])
    assert result.n == result.n_inputs == n_tokens > a.n_inputs  # every token a row (under the 5,000 cap)
    assert result.info["rows"] == "tokens" and (result.run_a, result.run_b) == (a.key, b.key)
    for i, j in ((0, 0), (1, 2), (2, 2)):
        expected = linear_cka(np.asarray(a[LAYERS[i]]), np.asarray(b[LAYERS[j]]))
        assert result.matrix[i, j] == pytest.approx(expected, abs=1e-9)
    hits = store.counts["similarity", "hit"]
    again = similarity_of_runs(store, a, b, "linear_cka", {}, rows="tokens")
    assert store.counts["similarity", "hit"] == hits + 1
    np.testing.assert_array_equal(again.matrix, result.matrix)


def test_token_rows__differ_from_input_rows_and_input_rows_are_the_token_means(token_runs):
    store, runs = token_runs
    by_token = similarity_of_runs(store, runs["tokens"], runs["twin"], "linear_cka", {}, rows="tokens")
    by_input = similarity_of_runs(store, runs["tokens"], runs["twin"], "linear_cka", {}, rows="inputs")
    assert by_input.info["rows"] == "inputs" and by_input.n == runs["tokens"].n_inputs
    assert not np.allclose(by_token.matrix, by_input.matrix)
    reference = similarity_matrix(runs["tokens"], runs["twin"], "linear_cka")
    np.testing.assert_allclose(by_input.matrix, reference.matrix, atol=1e-12)
    pooled = similarity_of_runs(store, runs["tokens"], runs["mean"], "linear_cka", {}, rows="inputs")
    assert np.diag(pooled.matrix).min() > 0.999  # mean pooling is the mean of the tokens


@pytest.mark.parametrize(("other", "message"), [("mean", "needs per-token runs"),
                                                ("short", "tokenise the inputs differently")])
def test_token_rows__refuse_runs_whose_tokens_do_not_align(token_runs, other, message):
    store, runs = token_runs
    with pytest.raises(LayerscopeError, match=message):
        similarity_of_runs(store, runs["tokens"], runs[other], "linear_cka", {}, rows="tokens")
    with pytest.raises(LayerscopeError, match=r"rows='cells' must be one of"):
        similarity_of_runs(store, runs["tokens"], runs["twin"], "linear_cka", {}, rows="cells")


def test_token_rows__work_stopped_midway_stores_nothing(token_runs):
    store, runs = token_runs

    class Stopped(Exception):
        pass

    def stop_after_two(done: int, total: int, what: str) -> None:
        if done >= 2:
            raise Stopped(what)

    with pytest.raises(Stopped):
        similarity_of_runs(store, runs["short"], runs["short"], "mutual_knn", {"k": 5}, rows="tokens",
                           progress=stop_after_two)
    misses = store.counts["similarity", "miss"]
    calls = []
    similarity_of_runs(store, runs["short"], runs["short"], "mutual_knn", {"k": 5}, rows="tokens",
                       progress=lambda done, total, what: calls.append(done))
    assert store.counts["similarity", "miss"] == misses + 1 and calls  # computed again, not read back


def test_heatmap_recipe__says_what_a_row_is(token_runs):
    store, runs = token_runs
    spec = figure_spec("similarity_heatmap", [runs["tokens"].key, runs["twin"].key], metric="linear_cka",
                       metric_params={}, rows="tokens")
    built = build_figure(spec, store)
    assert "one row per token" in built.caption and built.analysis["rows"] == "tokens"
    assert "token rows" in built.figure.data[0].colorbar.title.text
    pooled = build_figure(figure_spec("similarity_heatmap", [runs["tokens"].key, runs["mean"].key],
                                      metric="linear_cka", metric_params={}), store)
    assert "per-token minilm as each input's mean token vector" in pooled.caption
    assert "token rows" not in pooled.figure.data[0].colorbar.title.text
