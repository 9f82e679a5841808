"""AppTest of Compare's calibration: a permutation null behind a button, marked cells, a cell's bootstrap interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import button, figures, values

import core
from core.store import Store
from dashboard import state

PAGES = ("compare.py", "workspace.py", "explorer.py", "probes.py", "home.py")


@pytest.fixture(scope="module")
def pair_workspace(tmp_path_factory, minilm) -> Path:
    """minilm and a re-initialised minilm (seed 1) on 40 demo sentences, mean-pooled."""
    root = tmp_path_factory.mktemp("compare_null_ws")
    data = core.load_dataset("demo:sentences", limit=40)
    core.extract(core.load_model("minilm", reinit=True, seed=1, device="cpu"), data, layers="all", pooling="mean",
                 store=Store(root))
    core.extract(minilm, data, layers="all", pooling="mean", store=Store(root))
    return root


def _heatmap(at) -> dict:
    [heatmap] = [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap"]
    return heatmap


def test_compare__option_off_draws_the_page_as_before(page_app, pair_workspace):
    at = page_app("compare.py", pair_workspace, PAGES)
    at.run()
    assert not at.exception, at.exception
    names = [trace.get("name", "") for trace in _heatmap(at)["data"]]
    assert not any("permutation null" in name for name in names)
    assert not [b for b in at.button if "permutation null" in b.label]


def test_compare__permutation_null_marks_cells_and_a_cell_gets_its_interval(page_app, pair_workspace):
    at = page_app("compare.py", pair_workspace, PAGES)
    at.run()
    at.sidebar.checkbox(key=state.Compare.NULL).check()
    at.run()
    at.sidebar.number_input(key=state.Compare.NULL_PERMUTATIONS).set_value(20)
    at.run()
    assert not at.exception, at.exception
    button(at, "Compute the permutation null (20 permutations)").click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    heatmap = _heatmap(at)
    z = values(heatmap["data"][0]["z"])
    hover = np.asarray(heatmap["data"][0]["text"], dtype=object)
    assert all("null mean" in text and "p = " in text for text in hover.ravel())
    [marks] = [t for t in heatmap["data"] if t.get("name", "").startswith("not above the permutation null")]
    assert marks["showlegend"] and "20 permutations" in marks["name"]
    # an untrained minilm against a trained one: some cells are above the null, and only those go unmarked
    marked = set(zip(values(marks["y"]).astype(int).tolist(), values(marks["x"]).astype(int).tolist()))
    assert len(marked) < z.size
    assert "permutation null (20 shuffles" in " ".join(c.value for c in at.caption)

    button(at, "Compute its bootstrap interval").click()
    at.run()
    assert not at.exception, at.exception
    [metric] = [m for m in at.metric if "bootstrap interval" in m.label]
    low, high = (float(v) for v in metric.value.split(" to "))
    assert low <= high
    assert "bootstrap interval" in " ".join(c.value for c in at.caption)
    assert not at.get("progress")  # the bars are gone
