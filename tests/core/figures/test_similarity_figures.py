"""Structure of the comparison figures: traces, titles, axes."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.similarity import similarity_matrix
from core.figures.similarity import relative_depth_curves, similarity_heatmap
from core.figures.style import compact_layer_names


@pytest.fixture(scope="module")
def layers() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    out = {}
    for i in range(4):
        X = np.tanh(X @ rng.standard_normal((X.shape[1], 8)) + 0.3 * rng.standard_normal((40, 8)))
        out[f"block{i}"] = X
    return out


def test_similarity_heatmap__matrix_and_best_match_line(layers):
    other = {name: layers[name] for name in list(layers)[:3]}
    result = similarity_matrix(layers, other, "mutual_knn", k=5)
    fig = similarity_heatmap(result)
    assert [t.type for t in fig.data] == ["heatmap", "scatter", "scatter"]
    heatmap, cells, best = fig.data
    assert len(cells.x) == 12 and list(cells.customdata[5]) == ["block1", "block2"]  # a click names both layers
    assert np.asarray(heatmap.z).shape == (4, 3)
    assert heatmap.colorbar.title.text == "mutual k-NN (k=5, no clipping)"
    assert list(best.y) == [0, 1, 2, 3] and list(best.x) == list(np.nanargmax(result.matrix, axis=1))
    assert "A: block0" in heatmap.text[0][0] and "B: block2" in heatmap.text[0][2]
    assert fig.layout.yaxis.title.text == "A layer (A)"
    assert fig.layout.xaxis.title.text == "B layer (B); circles: best match for each A layer"
    assert list(fig.layout.xaxis.ticktext) == list(other)
    assert fig.layout.title.text.startswith("mutual k-NN (k=5, no clipping): A vs B")
    assert len(similarity_heatmap(result, trace_best=False).data) == 2
    assert best.unselected.marker.opacity == 1.0  # the line stays visible after a click selects a cell
    outlined = similarity_heatmap(result, selected=("block2", "block1")).data[-1]
    assert (outlined.name, list(outlined.x), list(outlined.y)) == ("selected cell", [1], [2])
    assert len(similarity_heatmap(result, selected=("block2", "nope")).data) == 3  # unknown layer: no outline
    assert (heatmap.zmin, heatmap.zmax) == (0.0, 1.0)  # the metric's range by default
    fitted = similarity_heatmap(result, fit_colours=True).data[0]
    assert (fitted.zmin, fitted.zmax) == (np.nanmin(result.matrix), np.nanmax(result.matrix))


def test_compact_layer_names__drop_the_shared_prefix_and_number_the_blocks():
    llama = ["model.embed_tokens", *[f"model.layers.{i}" for i in range(30)], "model.norm"]
    assert compact_layer_names(llama) == ["embed_tokens", *[str(i) for i in range(30)], "norm"]
    bert = ["embeddings", *[f"encoder.layer.{i}" for i in range(6)]]
    assert compact_layer_names(bert) == ["embeddings", "0", "1", "2", "3", "4", "5"]
    assert compact_layer_names(["fc1", "fc2", "head"]) == ["fc1", "fc2", "head"]  # nothing to shorten
    assert compact_layer_names(["a.x.0", "a.y", "a.z"]) == ["x.0", "y", "z"]  # blocks are not most names


def test_similarity_heatmap__long_layer_names_get_short_ticks_and_full_hover(layers):
    renamed = {f"model.layers.{i}": X for i, X in enumerate(layers.values())}
    fig = similarity_heatmap(similarity_matrix(renamed, renamed, "linear_cka"))
    assert list(fig.layout.xaxis.ticktext) == ["0", "1", "2", "3"] == list(fig.layout.yaxis.ticktext)
    assert "A: model.layers.1" in fig.data[0].text[1][0]


def test_similarity_heatmap__nan_cells_explain_themselves_and_distances_reverse(layers):
    broken = dict(layers, block1=np.ones((40, 8)))
    result = similarity_matrix(broken, broken, "orthogonal_procrustes_distance")
    fig = similarity_heatmap(result, publication=True)
    heatmap, _cells, best = fig.data
    assert "undefined: layer block1 is constant" in heatmap.text[1][0]
    assert heatmap.reversescale and heatmap.colorbar.title.text.endswith("(lower = more similar)")
    assert list(best.y) == [0, 2, 3] and list(best.x) == [0, 2, 3]  # each layer closest to itself


def test_relative_depth_curves__one_trace_per_model_on_0_to_1(layers):
    fig = relative_depth_curves(
        {"small": (["a", "b", "c"], [0.1, 0.5, 0.9]), "large": ([f"l{i}" for i in range(6)], np.linspace(0, 1, 6))},
        y_title="probe accuracy",
        title="Probe accuracy by relative depth",
    )
    assert [t.name for t in fig.data] == ["small", "large"]
    np.testing.assert_allclose(fig.data[0].x, [0, 0.5, 1])
    np.testing.assert_allclose(fig.data[1].x, np.linspace(0, 1, 6))
    assert fig.layout.title.text == "Probe accuracy by relative depth"
    assert fig.layout.xaxis.title.text.startswith("relative depth")
    assert fig.layout.yaxis.title.text == "probe accuracy"
    with pytest.raises(ValueError, match="2 layer names but 3 values"):
        relative_depth_curves({"bad": (["a", "b"], [1, 2, 3])}, y_title="y", title="t")
