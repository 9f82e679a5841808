"""AppTest tests of steps that take seconds: the explorer's t-SNE and Compare's digits MLPs.

Each runs behind a live progress bar (dashboard/live_progress.py) that is gone once the
result is drawn; a Cancel click is remembered, so the page says so instead of starting again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import button, figures, values

import core
from core.store import Store
from dashboard import layer_maps, state


@pytest.fixture(scope="module")
def sentences_workspace(tmp_path_factory, minilm) -> Path:
    """minilm on 40 demo sentences, mean-pooled."""
    root = tmp_path_factory.mktemp("long_steps_ws")
    core.extract(minilm, core.load_dataset("demo:sentences", limit=40), layers="all", pooling="mean",
                 store=Store(root))
    return root


def _projection(at):
    return at.sidebar.radio[0]


def test_explorer__tsne_is_drawn_and_its_bar_is_gone(page_app, sentences_workspace):
    at = page_app("explorer.py", sentences_workspace, ("explorer.py", "home.py"))
    at.run()
    _projection(at).set_value("t-SNE")
    at.run()
    assert not at.exception, at.exception
    assert not at.get("progress")  # the bar is removed once the map is there
    assert any("not aligned across layers" in info.value for info in at.info)
    maps = [f for f in figures(at) if "t-SNE" in str(f["layout"].get("xaxis", {}).get("title", ""))]
    assert maps, [f["layout"].get("xaxis", {}).get("title") for f in figures(at)]
    stored = Store(sentences_workspace).list_entries("projection")
    assert any(e["params"]["method"] == "tsne" for e in stored)


def test_explorer__a_stopped_tsne_says_so_shows_pca_and_offers_to_start_again(page_app, sentences_workspace):
    at = page_app("explorer.py", sentences_workspace, ("explorer.py", "home.py"))
    at.run()
    run = Store(sentences_workspace).list_runs()[0]
    layer = run["layers"][0]  # the slider opens on the first layer
    at.session_state[layer_maps.TSNE_STOPPED] = {"request": ("tsne", run["key"], layer), "elapsed": 3.2,
                                                 "done": 0, "total": 1, "words": "fitting t-SNE"}
    _projection(at).set_value("t-SNE")
    at.run()
    assert not at.exception, at.exception
    infos = [info.value for info in at.info]
    assert any(f"t-SNE of {layer} was stopped after 3.2 s (fitting t-SNE)" in text for text in infos), infos
    assert any("showing PCA" in text for text in infos)
    button(at, "Compute t-SNE again").click()
    at.run()
    assert not at.exception, at.exception
    assert not any("was stopped" in info.value for info in at.info)
    assert any("not aligned across layers" in info.value for info in at.info)


def test_compare__two_digits_mlps_are_trained_behind_a_bar_and_compared(page_app, tmp_path):
    root = tmp_path / "ws"
    digits = core.load_dataset("demo:digits")
    core.extract(core.load_model("digits-mlp", workspace=root, device="cpu"), digits, layers="all", pooling="mean",
                 store=Store(root))
    at = page_app("compare.py", root, ("compare.py", "workspace.py", "home.py"))
    at.run()
    assert not at.exception, at.exception
    button(at, "Train two digits MLPs (seeds 0 and 1) and extract them").click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert not at.get("progress")  # the bar is gone
    runs = Store(root).list_runs()
    assert sorted(r["model"]["name"] for r in runs) == ["digits-mlp", "digits-mlp:seed=1"]
    seed1 = next(r["key"] for r in runs if r["model"]["name"] == "digits-mlp:seed=1")
    assert at.sidebar.selectbox(key=state.Compare.MODEL_B).value == seed1
    heatmap = next(f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap")
    z = values(heatmap["data"][0]["z"])
    assert np.isfinite(z).all() and z[-1, -1] < 1.0  # two seeds: alike, not the same
