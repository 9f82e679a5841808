"""The explorer's map without a page: label filters, the figure's layout, selection events, the UMAP note."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import values
from streamlit.elements.plotly_chart import PlotlyChartSelectionSerde

from core.errors import LayerscopeError
from core.export import figure_spec
from core.figures.maps import layer_map
from core.recipes import build_figure
from core.recipes.maps import describe_filter, drawn_rows, label_mask
from dashboard import jobs, layer_maps


@pytest.fixture(scope="module")
def acts(demo_workspace):
    """The demo workspace's minilm run on all 864 demo sentences."""
    run = next(r for r in demo_workspace.list_runs()
               if r["dataset"]["name"] == "demo:sentences" and r["pooling"] == "mean")
    return demo_workspace.open_run(run["key"])


# ----- filters ---------------------------------------------------------------------------------
def test_label_mask__keeps_inputs_whose_label_is_chosen_on_every_column(acts):
    topic, sentiment = (acts.table[c].astype(str).to_numpy() for c in ("topic", "sentiment"))
    labels = acts.table[list(acts.label_columns)]
    mask = label_mask(labels, {"topic": ["food", "weather"], "sentiment": ["positive"]})
    assert np.array_equal(mask, np.isin(topic, ["food", "weather"]) & (sentiment == "positive"))
    assert label_mask(labels).all() and label_mask(labels, {}, {}).all()
    assert not label_mask(labels, {"topic": []}).any()


def test_label_mask__range_of_a_numeric_label_is_inclusive_and_leaves_out_missing():
    labels = pd.DataFrame({"score": [0.5, 1.0, 2.0, np.nan, 3.0]})
    assert label_mask(labels, label_ranges={"score": [1.0, 2.0]}).tolist() == [False, True, True, False, False]
    assert label_mask(labels, {"score": ["2.0"]}).tolist() == [False, False, True, False, False]  # as text


@pytest.mark.parametrize(("filters", "message"), [
    ({"label_filter": {"colour": ["red"]}}, "label_filter='colour' must be one of: topic, sentiment"),
    ({"label_filter": {"topic": "food"}}, "must be a list of label values"),
    ({"label_ranges": {"topic": [1]}}, "must be a (low, high) pair"),
    ({"label_ranges": {"topic": [2, 1]}}, "high=1 must be a finite number >= 2"),
])
def test_label_mask__refuses_unknown_columns_and_malformed_values(acts, filters, message):
    with pytest.raises(LayerscopeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        label_mask(acts.table[list(acts.label_columns)], **filters)


def test_drawn_rows__a_filter_that_keeps_nothing_is_an_error_naming_it(acts):
    assert len(drawn_rows(acts)) == 864
    with pytest.raises(LayerscopeError, match=r"topic in \{nothing\}\) keeps no input of 864"):
        drawn_rows(acts, label_filter={"topic": ["nothing"]})


def test_describe_filter__words_values_and_ranges():
    assert describe_filter() == ""
    assert describe_filter({"topic": ["food", "sports"]}, {"population": [1000, 2_000_000]}) == (
        "topic in {food, sports}; population 1,000 to 2,000,000")
    assert describe_filter({"country": list("abcdef")}) == "country in {a, b, c, d, +2 more}"


# ----- the recipe: filters in the figure, its caption, its provenance and its sidecar ---------------
def test_layer_map_recipe__filters_reach_the_caption_the_analysis_and_a_rebuilt_sidecar(acts, demo_workspace):
    spec = json.loads(json.dumps(figure_spec("layer_map", [acts.key], layer="encoder.layer.2", color_by="topic",
                                             label_filter={"sentiment": ["negative"]}, region_rows=[0, 1, 2, 3])))
    built = build_figure(spec, demo_workspace)
    negative = acts.table["sentiment"].astype(str).to_numpy() == "negative"
    n = int(negative.sum())
    assert f"{n} of 864 inputs (sentiment in {{negative}})" in built.caption
    assert built.analysis["parameters"]["label_filter"] == {"sentiment": ["negative"]}
    assert built.analysis["points_drawn"] == n == len(built.table)
    drawn = np.concatenate([values(t.customdata) for t in built.figure.data if t.name in set(acts.table["topic"])])
    assert np.array_equal(np.sort(drawn), np.flatnonzero(negative))
    outline = next(t for t in built.figure.data if t.name.startswith("box/lasso selection"))
    assert set(values(outline.customdata)) == {i for i in range(4) if negative[i]}  # drawn inputs only
    assert "sentiment in {negative}" in built.figure.layout.title.subtitle.text


def test_layer_map__categorical_colours_do_not_depend_on_the_rows_drawn():
    coords = np.random.default_rng(0).normal(size=(60, 2))
    labels = pd.DataFrame({"kind": np.repeat(["a", "b", "c"], 20)})
    every = layer_map(coords, texts=[str(i) for i in range(60)], labels=labels, color_by="kind")
    some = layer_map(coords, texts=[str(i) for i in range(60)], labels=labels, color_by="kind", rows=np.arange(20, 60))
    colours = {t.name: t.marker.color for t in every.data}
    assert [t.name for t in some.data] == ["b", "c"]
    assert all(t.marker.color == colours[t.name] for t in some.data)


def test_layer_map__numeric_colouring_keeps_the_legend_clear_of_the_colour_bar():
    coords = np.random.default_rng(0).normal(size=(40, 2))
    labels = pd.DataFrame({"score": np.linspace(0, 1, 40)})
    fig = layer_map(coords, texts=[f"t{i}" for i in range(40)], labels=labels, color_by="score",
                    highlight=np.arange(40) < 5)
    scale, matches = fig.data
    assert scale.marker.showscale and scale.showlegend is False and matches.name == "matches (5)"
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "bottom"  # above the plot
    assert fig.layout.legend.y >= 1.0
    categorical = layer_map(coords, texts=[f"t{i}" for i in range(40)], labels=labels.astype(int).astype(str),
                            color_by="score", highlight=np.arange(40) < 5)
    assert categorical.layout.legend.orientation is None  # no colour bar: the legend keeps the right edge


# ----- selection events of the map -------------------------------------------------------------
def event(points: list, *, box: list | None = None, lasso: list | None = None):
    """A selection event as Streamlit hands it to the page (deserialised from the browser's JSON)."""
    selection = {"points": points, "point_indices": list(range(len(points))), "box": box or [], "lasso": lasso or []}
    return PlotlyChartSelectionSerde().deserialize(json.dumps({"selection": selection}))


def test_picked_rows__a_click_picks_one_input_a_box_or_lasso_picks_rows_once():
    assert layer_maps.picked_rows(None) == (None, None)
    assert layer_maps.picked_rows(PlotlyChartSelectionSerde().deserialize(None)) == (None, None)
    assert layer_maps.picked_rows(event([{"customdata": 7, "x": 0, "y": 0}])) == (7, None)
    box = [{"xref": "x", "yref": "y", "x": [0, 1], "y": [0, 1]}]
    points = [{"customdata": 9}, {"customdata": [2]}, {"customdata": 9}]  # 9: a point and its search outline
    assert layer_maps.picked_rows(event(points, box=box)) == (None, [2, 9])
    assert layer_maps.picked_rows(event(points, lasso=[{"x": [0, 1, 1], "y": [0, 0, 1]}])) == (None, [2, 9])
    assert layer_maps.picked_rows(event([], box=box)) == (None, None)  # an empty box picks nothing


def test_inputs_table__row_text_and_labels_in_row_order_capped(acts):
    table = layer_maps.inputs_table(acts, np.array([40, 3, 10]))
    assert list(table.columns) == ["row", "text", "topic", "sentiment"]
    assert table["row"].tolist() == [3, 10, 40]
    assert table["text"].tolist() == [acts.texts[i] for i in (3, 10, 40)]
    assert len(layer_maps.inputs_table(acts, np.arange(864), max_rows=100)) == 100


# ----- the UMAP note ---------------------------------------------------------------------------
def test_umap_note__says_the_stage_and_the_time_spent():
    job = jobs.Job(key="aligned-umap-x", label="aligned UMAP", started=time.time() - 42)
    cold = layer_maps.umap_note(job, 7, warm=False)
    assert "compiling UMAP" in cold and "42 s so far" in cold and "switches by itself" in cold
    job.progress(0, 7, "aligned UMAP of 7 layers")
    assert "aligned UMAP of 7 layers in one fit" in layer_maps.umap_note(job, 7, warm=True)
    job.progress(7, 7, "aligned UMAP done")
    assert "storing the maps" in layer_maps.umap_note(job, 7, warm=True)
    job.started -= 10  # the note is worded anew at each look: its time moves with the job's
    assert "52 s so far" in layer_maps.umap_note(job, 7, warm=True)


# ----- UMAP maps already stored ------------------------------------------------------------------
def test_maps_for__stored_umap_maps_are_shown_at_once_and_start_no_job(acts, tmp_path, monkeypatch):
    import shutil

    from core.analysis.projection import cached as projection_cached
    from core.store import Store

    store = Store(tmp_path / "ws")
    shutil.copytree(acts.path, store.run_dir(acts.key))  # the run alone, in a workspace of its own
    monkeypatch.setenv("LAYERSCOPE_WORKSPACE", str(store.root))
    run = store.open_run(acts.key)
    layer = run.layer_names[-1]
    assert jobs.aligned_umap_job(run.key) is None
    # maps stored under UMAP's key (as an earlier server or `make run`'s preparation left them)
    _, _, params = projection_cached._aligned_params(run, run.layer_names, "umap", seed=0, n_neighbors=15,
                                                     min_dist=0.1, metric="euclidean")
    coords = np.random.default_rng(0).normal(size=(len(run.layer_names), len(run), 2)).astype(np.float32)
    store.save(projection_cached.KIND, params, projection_cached.AlignedMaps(tuple(run.layer_names), coords))

    shown = layer_maps.maps_for(run, "UMAP", layer)
    assert shown.axis_name == "UMAP" and not shown.umap_pending and shown.note is None
    np.testing.assert_array_equal(shown.maps[-1], coords[-1])
    assert jobs.aligned_umap_job(run.key) is None  # nothing waits for the warm-up
