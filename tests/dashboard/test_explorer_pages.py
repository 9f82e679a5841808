"""AppTest tests of the Layer explorer: label filters, and the inputs table that follows a box/lasso selection.

The page runs under a small st.navigation entry (conftest's `page_app`) on the session's demo
workspace (minilm, mean pooling, all 864 demo sentences) or on 200 demo cities.
"""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

import numpy as np
from apptest_helpers import button, figures, values

import core
from core.store import Store
from dashboard import state

PAGES = ("explorer.py", "workspace.py")


@pytest.fixture()
def app(page_app):
    """app(workspace, run_key) -> the explorer's AppTest on that run, after its first run."""

    def make(workspace, run_key: str):
        at = page_app("explorer.py", workspace, PAGES)
        at.session_state[state.RUN] = run_key
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return make


@pytest.fixture(scope="module")
def sentences_run(demo_workspace) -> str:
    """The key of the demo workspace's minilm run on all demo sentences (mean pooling)."""
    return next(r["key"] for r in demo_workspace.list_runs()
                if r["dataset"]["name"] == "demo:sentences" and r["pooling"] == "mean")


@pytest.fixture(scope="module")
def cities_workspace(tmp_path_factory, minilm) -> tuple[Store, str]:
    """A workspace with one minilm run on 200 demo cities (numeric labels: latitude, population)."""
    store = Store(tmp_path_factory.mktemp("explorer-cities"))
    acts = core.extract(minilm, core.load_dataset("demo:cities", limit=200), layers="all", pooling="mean",
                        store=store)
    return store, acts.key


def inputs_table(at):
    """The page's table of the inputs shown (the one with a row column)."""
    tables = [df.value for df in at.dataframe if "row" in df.value.columns]
    assert len(tables) == 1, [list(df.value.columns) for df in at.dataframe]
    return tables[0]


def traces(at) -> dict[str, dict]:
    """The map's traces by name."""
    specs = figures(at)
    assert len(specs) == 1
    return {t["name"]: t for t in specs[0]["data"]}


def multiselect(at, label: str):
    return next(m for m in at.multiselect if m.label == label)


def test_explorer__filter_by_topic_keeps_only_those_inputs(app, demo_workspace, sentences_run):
    at = app(demo_workspace.root, sentences_run)
    topics = demo_workspace.open_run(sentences_run).table["topic"].to_numpy()
    before = traces(at)
    assert len(inputs_table(at)) == 864

    multiselect(at, "topic").set_value(["food", "sports"]).run()
    assert not at.exception, [e.value for e in at.exception]
    after = traces(at)
    n = int(np.isin(topics, ["food", "sports"]).sum())
    assert set(after) == {"food", "sports"}
    assert sum(len(values(t["x"])) for t in after.values()) == n
    for name in ("food", "sports"):  # a category keeps its colour when others are filtered out
        assert after[name]["marker"]["color"] == before[name]["marker"]["color"]
    rows = inputs_table(at)
    assert len(rows) == n and set(rows["topic"]) == {"food", "sports"}
    assert figures(at)[0]["layout"]["title"]["subtitle"]["text"] == f"Showing {n} of 864 inputs (topic in {{food, sports}})"

    multiselect(at, "sentiment").set_value(["negative"]).run()  # filters on two columns both apply
    sentiment = demo_workspace.open_run(sentences_run).table["sentiment"].to_numpy()
    both = int((np.isin(topics, ["food", "sports"]) & (sentiment == "negative")).sum())
    assert 0 < both < n
    assert len(inputs_table(at)) == both
    assert sum(len(values(t["x"])) for t in traces(at).values()) == both

    multiselect(at, "topic").set_value([]).run()
    multiselect(at, "sentiment").set_value([]).run()
    assert len(inputs_table(at)) == 864


def test_explorer__search_counts_only_filtered_inputs(app, demo_workspace, sentences_run):
    at = app(demo_workspace.root, sentences_run)
    texts = demo_workspace.open_run(sentences_run).texts
    topics = demo_workspace.open_run(sentences_run).table["topic"].to_numpy()
    at.text_input[0].set_value("the").run()
    multiselect(at, "topic").set_value(["weather"]).run()
    hits = sum(1 for t, topic in zip(texts, topics) if "the" in t.lower() and topic == "weather")
    assert any(c.value.startswith(f"{hits} inputs shown contain") for c in at.caption)
    assert f"matches ({hits})" in traces(at)


def test_explorer__box_selection_narrows_the_table_and_show_all_restores_it(app, demo_workspace, sentences_run):
    at = app(demo_workspace.root, sentences_run)
    picked = [3, 10, 11, 40, 500, 863]
    # what the page keeps when a box or lasso on the map picks rows (the event itself is a browser's:
    # test_explorer_e2e.py drags a box on the real chart)
    at.session_state[state.Explorer.REGION] = {"run": sentences_run, "rows": picked}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert inputs_table(at)["row"].tolist() == picked
    outline = traces(at)[f"box/lasso selection ({len(picked)})"]
    assert sorted(values(outline["customdata"]).ravel().tolist()) == picked

    at.select_slider[0].set_value("encoder.layer.3").run()  # the same inputs, outlined on another layer
    assert inputs_table(at)["row"].tolist() == picked
    assert f"box/lasso selection ({len(picked)})" in traces(at)

    topics = demo_workspace.open_run(sentences_run).table["topic"].to_numpy()
    topic = str(topics[picked[0]])
    multiselect(at, "topic").set_value([topic]).run()  # the table keeps the selected inputs the filter keeps
    kept = [r for r in picked if topics[r] == topic]
    assert inputs_table(at)["row"].tolist() == kept
    assert any("more are filtered out" in c.value for c in at.caption)
    multiselect(at, "topic").set_value([]).run()

    button(at, "Show all inputs").click().run()
    assert not at.exception
    assert len(inputs_table(at)) == 864
    assert not any(name.startswith("box/lasso selection") for name in traces(at))
    assert state.Explorer.REGION not in at.session_state


def test_explorer__selection_of_another_run_is_not_applied(app, demo_workspace, sentences_run):
    at = app(demo_workspace.root, sentences_run)
    at.session_state[state.Explorer.REGION] = {"run": "another-run", "rows": [1, 2]}
    at.run()
    assert len(inputs_table(at)) == 864
    assert not any(b.label == "Show all inputs" for b in at.button)


def test_explorer__numeric_label_filters_by_range_and_colours_by_value(app, cities_workspace):
    store, key = cities_workspace
    at = app(store.root, key)
    latitude = store.open_run(key).table["latitude"].to_numpy()
    slider = next(s for s in at.slider if s.label == "latitude")
    low, high = slider.value
    assert (low, high) == (pytest.approx(latitude.min()), pytest.approx(latitude.max()))
    assert len(inputs_table(at)) == 200  # an untouched range filters nothing out
    assert "subtitle" not in figures(at)[0]["layout"]["title"]
    slider.set_value((0.0, high)).run()
    assert not at.exception, [e.value for e in at.exception]
    n = int((latitude >= 0).sum())
    assert 0 < n < 200
    rows = inputs_table(at)
    assert len(rows) == n and (rows["latitude"] >= 0).all()
    assert "latitude 0 to" in figures(at)[0]["layout"]["title"]["subtitle"]["text"]

    next(s for s in at.selectbox if s.label == "Colour by").set_value("latitude").run()
    at.text_input[0].set_value("San").run()
    spec = figures(at)[0]
    scale = next(t for t in spec["data"] if t["marker"].get("showscale"))
    assert scale["showlegend"] is False  # the colour bar names the column; the legend lists the outlines only
    assert scale["marker"]["cmin"] == pytest.approx(latitude.min())  # colours of all inputs, not the filtered
    assert spec["layout"]["legend"]["orientation"] == "h"  # above the plot, clear of the colour bar
