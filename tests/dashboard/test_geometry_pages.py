"""AppTest tests of the Geometry, Trajectory and Logit lens pages on a real minilm tokens run.

Each page runs under a small st.navigation entry registering PAGES (conftest's `page_app`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

streamlit = pytest.importorskip("streamlit")

import numpy as np
from apptest_helpers import button, figures, values

import core
from core.store import Store
from dashboard import planning

PAGES = ("geometry.py", "trajectory.py", "lens.py", "workspace.py", "explorer.py", "home.py")


@pytest.fixture(scope="module")
def tokens_workspace(tmp_path_factory) -> Path:
    """A workspace holding one minilm run with pooling='tokens' on 60 demo sentences."""
    root = tmp_path_factory.mktemp("pages_workspace")
    model = core.load_model("minilm", device="cpu")
    core.extract(model, core.load_dataset("demo:sentences", limit=60), pooling="tokens", store=Store(root))
    return root


@pytest.fixture()
def app(page_app):
    """app(page, workspace) -> AppTest of that page (conftest's `page_app` with this module's PAGES)."""
    return lambda page, workspace: page_app(page, workspace, PAGES)


# ----- empty workspace -------------------------------------------------------------------
@pytest.mark.parametrize("page", ["geometry.py", "trajectory.py"])
def test_page__empty_workspace_says_what_to_do(app, tmp_path, page):
    at = app(page, tmp_path / "empty_workspace")
    at.run()
    assert not at.exception
    assert at.info, "an empty workspace should show an info message"
    assert "Workspace page" in at.info[0].value
    assert not at.get("plotly_chart")


def test_trajectory__pooled_only_workspace_asks_for_tokens_run(app, tmp_path):
    root = tmp_path / "pooled_workspace"
    core.extract(core.load_model("minilm", device="cpu"), core.load_dataset("demo:sentences", limit=30),
                 pooling="mean", store=Store(root))
    at = app("trajectory.py", root)
    at.run()
    assert not at.exception
    assert "pooling='tokens'" in at.info[0].value


# ----- geometry ----------------------------------------------------------------------------
def test_geometry__compute_draws_one_curve_per_metric(app, tokens_workspace, tmp_path):
    fresh = tmp_path / "fresh_workspace"  # the module's workspace may hold geometry another test computed
    shutil.copytree(tokens_workspace / "runs", fresh / "runs")
    at = app("geometry.py", fresh)
    at.run()
    assert not at.exception
    assert not at.get("plotly_chart"), "geometry is computed behind the button"
    button(at, "Compute geometry").click().run()
    assert not at.exception
    drawn = figures(at)
    assert len(drawn) == 2  # curvature and intrinsic dimension, the default metrics
    titles = [f["layout"]["title"]["text"] for f in drawn]
    assert any(t.startswith("Trajectory curvature") for t in titles)
    assert any(t.startswith("Intrinsic dimension") for t in titles)
    curvature = next(f for f in drawn if f["layout"]["title"]["text"].startswith("Trajectory curvature"))
    assert "degrees" in curvature["layout"]["yaxis"]["title"]["text"]
    assert curvature["layout"]["xaxis"]["title"]["text"].startswith("relative depth")

    at.run()  # a rerun shows the stored result without a click
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2


def test_geometry__untrained_twin_is_extracted_and_overlaid(app, tokens_workspace):
    at = app("geometry.py", tokens_workspace)
    at.run()
    at.toggle[0].set_value(True).run()  # "Trained vs untrained"
    assert not at.exception
    button(at, "Compute geometry").click().run()
    assert not at.exception
    names = {trace.get("name") for figure in figures(at) for trace in figure["data"]}
    assert any(name and "untrained" in name for name in names), names
    assert any(name and name.startswith("minilm ·") for name in names), names
    runs = Store(tokens_workspace).list_runs()
    assert any(r["model"]["name"] == "minilm (untrained, seed 0)" and r["pooling"] == "tokens" for r in runs)


def test_geometry__pooled_run_shows_reason_for_curvature(app, tmp_path):
    root = tmp_path / "pooled_workspace"
    core.extract(core.load_model("minilm", device="cpu"), core.load_dataset("demo:sentences", limit=30),
                 pooling="mean", store=Store(root))
    at = app("geometry.py", root)
    at.run()
    metrics = _widget(at.sidebar.multiselect, "Metrics")
    assert metrics.value == ["intrinsic_dimension", "dataset_entropy"]  # a pooled run opens without curvature
    metrics.set_value(["curvature", "intrinsic_dimension"]).run()
    button(at, "Compute geometry").click().run()
    assert not at.exception
    assert any("pooling='tokens'" in w.value for w in at.warning), [w.value for w in at.warning]


def _widget(widgets, label: str):
    matches = [w for w in widgets if w.label == label]
    assert matches, f"no widget {label!r}; there are {[w.label for w in widgets]}"
    return matches[0]


def _curve(at, title: str) -> dict:
    """The first line (not band) of the figure whose title starts with `title`."""
    figure = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith(title))
    return next(t for t in figure["data"] if "lines" in t.get("mode", "") and t.get("fill") != "toself")


def test_geometry__skean_entropy_and_zero_length_steps_change_values_and_legends(app, tokens_workspace):
    at = app("geometry.py", tokens_workspace)
    at.run()
    _widget(at.sidebar.multiselect, "Metrics").set_value(["curvature", "dataset_entropy"]).run()
    button(at, "Compute geometry").click().run()
    assert not at.exception
    exact = _curve(at, "Dataset entropy")
    assert exact["name"] == "minilm · α=1"

    _widget(at.sidebar.multiselect, "Entropy convention").set_value(["skean"]).run()
    _widget(at.sidebar.multiselect, "Curvature variant").set_value(["abs"]).run()
    _widget(at.sidebar.radio, "Zero-length steps (abs)").set_value("zero").run()
    button(at, "Compute geometry").click().run()
    assert not at.exception
    skean = _curve(at, "Dataset entropy")
    assert skean["name"] == "minilm · skean, α=1"
    assert np.max(np.abs(values(skean["y"]) - values(exact["y"]))) > 0.01
    assert _curve(at, "Trajectory curvature")["name"] == "minilm · abs (Skean), zero-length steps = 0"


def test_geometry_jobs__entropy_variants_and_zero_steps_go_only_where_they_apply():
    jobs = planning.geometry_jobs(["curvature", "dataset_entropy"], ["signed", "abs"], ["twonn"], 1.0,
                                  entropy_variants=["exact", "skean"], curvature_degenerate="zero")
    assert jobs[0] == (("curvature", "dataset_entropy"),
                       {"curvature_variant": "signed", "id_method": "twonn", "entropy_alpha": 1.0})
    assert jobs[1] == (("curvature",), {"curvature_variant": "abs", "curvature_degenerate": "zero"})
    assert jobs[2] == (("dataset_entropy",), {"entropy_alpha": 1.0, "entropy_variant": "skean"})
    assert len(jobs) == 3


# ----- trajectory --------------------------------------------------------------------------
def test_trajectory__draws_path_and_curvature_by_layer(app, tokens_workspace):
    at = app("trajectory.py", tokens_workspace)
    at.run()
    assert not at.exception
    drawn = figures(at)
    assert len(drawn) == 2
    assert drawn[0]["layout"]["xaxis"]["title"]["text"].startswith("PC 1")
    assert drawn[1]["layout"]["yaxis"]["title"]["text"] == "curvature (degrees)"
    button(at, "Add the mean over all inputs").click().run()
    assert not at.exception
    names = [trace.get("name") for trace in figures(at)[1]["data"]]
    assert any(name and name.startswith("all inputs") for name in names), names


# ----- logit lens ----------------------------------------------------------------------------
def test_lens__encoder_run_shows_clear_error(app, tokens_workspace):
    at = app("lens.py", tokens_workspace)
    at.run()
    at.sidebar.selectbox[0].set_value("minilm").run()
    assert not at.exception
    assert at.error, "minilm is an encoder: the page should say the lens needs a causal LM"
    assert "causal" in at.error[0].value and "smollm2" in at.error[0].value


@pytest.mark.slow
def test_lens__smollm2_heatmap_and_kl_curve(app, tokens_workspace, smollm2, session_store):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the page loads smollm2 from the workspace's converted weights: share the session's
    (tokens_workspace / "models").mkdir(exist_ok=True)
    link = tokens_workspace / "models" / "smollm2"
    if not link.exists():
        link.symlink_to(session_store.root / "models" / "smollm2", target_is_directory=True)
    at = app("lens.py", tokens_workspace)
    at.run()
    at.sidebar.selectbox[0].set_value("smollm2").run()
    button(at, "Run the logit lens").click().run()
    assert not at.exception
    drawn = figures(at)
    assert len(drawn) == 2
    heatmap = drawn[0]["data"][0]
    assert heatmap["type"] == "heatmap"
    assert heatmap["colorbar"]["title"]["text"] == "probability"
    z = heatmap["z"]  # plotly sends arrays base64-encoded with their shape
    rows = int(z["shape"].split(",")[0]) if isinstance(z, dict) else len(z)
    assert rows == 31  # embeddings + 30 blocks
