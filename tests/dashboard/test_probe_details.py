"""AppTest tests of the Probes page's progress, cancellation and baseline names, on a real minilm run of cities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

streamlit = pytest.importorskip("streamlit")

from apptest_helpers import button, figures

import core
from core.store import Store
from dashboard import state

PAGES = ("probes.py", "workspace.py", "explorer.py", "home.py")


@pytest.fixture(scope="module")
def cities_workspace(tmp_path_factory, minilm) -> tuple[Path, str]:
    """A workspace with a mean-pooled minilm run of 60 demo cities on two layers: (root, run key)."""
    root = tmp_path_factory.mktemp("probe_details")
    acts = core.extract(minilm, core.load_dataset("demo:cities", limit=60),
                        layers=["encoder.layer.2", "encoder.layer.3"], pooling="mean", store=Store(root))
    return root, acts.key


def _probed_columns(root: Path) -> list[str]:
    """The label columns the workspace holds a stored probe result for."""
    return sorted(json.loads(meta.read_text())["params"]["column"]
                  for meta in (root / "results" / "probes").glob("*/meta.json"))


def _open(page_app, root: Path, key: str, columns: list[str]):
    at = page_app("probes.py", root, PAGES)
    at.session_state[state.RUN] = key
    at.run()
    at.multiselect[0].set_value(columns).run()
    return at


def test_probes__computes_both_tasks_and_names_their_baselines_alike(page_app, cities_workspace):
    root, key = cities_workspace
    at = _open(page_app, root, key, ["continent", "latitude"])
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert {"continent", "latitude"} <= set(_probed_columns(root))  # computed by the page, kept in the workspace
    assert not at.get("progress")  # the bar is gone once the result is there
    labels = [m.label for m in at.metric]
    assert labels.count("Chance") == 1 and labels.count("Baseline: predict the mean") == 1
    assert "Baseline" not in labels  # the one word of the legend, not a second one
    legends = [[trace.get("name", "") for trace in fig["data"]] for fig in figures(at)]
    assert any(name.startswith("chance (") for name in legends[0])
    assert any(name.startswith("baseline: predict the mean (") for name in legends[1])
    assert not any(name.startswith("chance") for name in legends[1])


def test_probes__a_cancelled_probe_says_so_and_is_not_computed_until_asked_again(page_app, cities_workspace):
    root, key = cities_workspace
    column = "population"
    at = page_app("probes.py", root, PAGES)
    at.session_state[state.RUN] = key
    at.session_state[state.Probes.stopped(column)] = {  # what a click on Cancel records
        "request": (key, column, "shuffled"), "elapsed": 3.2, "done": 5, "total": 20, "words": "5/20 fits done"}
    at.run()
    at.multiselect[0].set_value([column]).run()
    assert not at.exception
    notes = [i.value for i in at.info]
    assert any(f"Probing {column} was stopped after 3.2 s (5/20 fits done)" in n for n in notes), notes
    assert column not in _probed_columns(root) and not at.metric  # nothing computed behind the note
    button(at, "Probe again").click().run()
    assert not at.exception
    assert column in _probed_columns(root)
    assert [m.label for m in at.metric][:1] == ["Best layer"]
    at.run()  # the next run reads it back: the note is gone
    assert not [i for i in at.info if "was stopped" in i.value] and at.metric
