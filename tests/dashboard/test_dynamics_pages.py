"""AppTest tests of the Training dynamics page on a fresh workspace and on a small real checkpoint series.

The series is the bundled digits MLP (seed 0) at initialisation and after one and two epochs of its
own training recipe (Adam, lr 1e-2, batches of 128), each checkpoint extracted on 120 bundled digits.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

streamlit = pytest.importorskip("streamlit")

import numpy as np
import torch
from apptest_helpers import button, figures, values
from recipe_checks import assert_page_draws, charts

import core
from core.export import figure_spec
from core.models.bundled import DigitsPreprocess, digits_mlp
from core.recipes import build_figure
from core.series import Series, list_series, save_series
from core.store import Store
from dashboard import series_choice, state

PAGES = ("dynamics.py", "workspace.py", "home.py")
EPOCHS = 2


def _checkpoints(epochs: int) -> list[torch.nn.Module]:
    """digits-mlp (seed 0) before training and after each of `epochs` epochs on all of demo:digits."""
    from core.data.demo import load_demo

    digits = load_demo("demo:digits")
    x = torch.from_numpy(digits.images.reshape(len(digits), 64).astype(np.float32) / 255.0)
    y = torch.tensor([int(d) for d in digits.table["digit"]])
    generator = torch.Generator().manual_seed(0)
    model = digits_mlp(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    saved = [copy.deepcopy(model).eval()]
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 128):
            batch = order[start : start + 128]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        saved.append(copy.deepcopy(model).eval())
    return saved


@pytest.fixture(scope="module")
def series_workspace(tmp_path_factory) -> Path:
    """A workspace holding three checkpoints of digits-mlp extracted on 120 bundled digits, linked as a series."""
    root = tmp_path_factory.mktemp("dynamics_workspace")
    store = Store(root)
    digits = core.load_dataset("demo:digits", limit=120)
    keys = []
    for epoch, module in enumerate(_checkpoints(EPOCHS)):
        model = core.load_model(module, preprocess=DigitsPreprocess(), modality="image", device="cpu")
        keys.append(core.extract(dataclasses.replace(model, name=f"digits-mlp epoch {epoch}"), digits, store=store).key)
    save_series(store, name="digits-mlp epochs", model="digits-mlp (seed 0) by epoch",
                steps=[f"epoch {e}" for e in range(EPOCHS + 1)], run_keys=keys, step_values=list(range(EPOCHS + 1)))
    return root


@pytest.fixture()
def app(page_app):
    """app(page, workspace) -> AppTest of that page (conftest's `page_app` with this module's PAGES)."""
    return lambda page, workspace: page_app(page, workspace, PAGES)


def _series(root: Path) -> Series:
    (series,) = list_series(Store(root))
    return series


# ----- helpers ------------------------------------------------------------------------------------
def test_metric_choices__curvature_only_on_per_token_series(series_workspace):
    series = _series(series_workspace)
    assert "curvature" not in series_choice.metric_choices(series)
    tokens = Series(**{**series.__dict__, "pooling": "tokens"})
    assert "curvature" in series_choice.metric_choices(tokens)
    assert series_choice.DEFAULT_METRIC in series_choice.metric_choices(series)


def test_describe_series__names_dataset_checkpoints_and_pooling(series_workspace):
    words = series_choice.describe_series(_series(series_workspace))
    assert words.startswith("digits-mlp epochs")
    assert "3 checkpoints" in words and "mean-pooled" in words and "digits" in words


def test_default_x_axis__even_steps_keep_the_step_log_spaced_get_one_space_each(series_workspace):
    series = _series(series_workspace)  # epochs 0, 1, 2
    assert series_choice.default_x_axis(series) == "step"
    log_spaced = Series(**{**series.__dict__, "step_values": (0.0, 1.0, 3.0, 10.0)})
    assert series_choice.default_x_axis(log_spaced) == "checkpoint"


# ----- empty workspace ------------------------------------------------------------------------------
def test_dynamics__empty_workspace_offers_the_bundled_series_and_the_command(app, tmp_path):
    at = app("dynamics.py", tmp_path / "empty")
    at.run()
    assert not at.exception
    assert "No checkpoint series yet" in at.info[0].value
    assert button(at, "Train and extract the digits-MLP series")
    assert any("python -m core series --model <folder of checkpoints> --data" in c.value for c in at.code)
    assert not at.get("plotly_chart")


# ----- a series -------------------------------------------------------------------------------------
def test_dynamics__each_part_waits_for_its_button_then_draws(app, series_workspace):
    at = app("dynamics.py", series_workspace)
    at.run()
    assert not at.exception
    assert not at.get("plotly_chart"), "every part is computed behind its button"
    assert at.sidebar.selectbox(key=state.Dynamics.SERIES).value == _series(series_workspace).key

    button(at, "Compute effective rank").click().run()
    assert not at.exception
    drawn = figures(at)
    assert len(drawn) == 2  # the heatmap and its curves
    heatmap = next(f for f in drawn if f["data"][0]["type"] == "heatmap")
    assert heatmap["layout"]["xaxis"]["title"]["text"] == "layer"
    assert heatmap["layout"]["yaxis"]["title"]["text"] == "checkpoint"
    assert list(heatmap["data"][0]["y"]) == ["epoch 0", "epoch 1", "epoch 2"]
    curves = next(f for f in drawn if f["data"][0]["type"] == "scatter")
    assert len(curves["data"]) == 6  # one curve per layer of the digits MLP
    assert "effective rank" in curves["layout"]["yaxis"]["title"]["text"]

    button(at, "Compute Linear CKA to the final checkpoint").click().run()
    assert not at.exception
    convergence = figures(at)[2]
    final_cka = [values(trace["y"])[-1] for trace in convergence["data"] if trace.get("mode") == "lines+markers"]
    assert final_cka and all(abs(v - 1.0) < 1e-6 for v in final_cka), "the final checkpoint is itself: CKA 1"

    button(at, "Map logits at every checkpoint").click().run()
    assert not at.exception
    animated = figures(at)[3]
    assert len(animated["frames"]) == 3  # one frame per checkpoint
    assert len(at.get("plotly_chart")) == 4

    at.run()  # a rerun shows what this session computed without a click
    assert not at.exception
    assert len(at.get("plotly_chart")) == 4

    # each figure is its recipe's: built again from the spec a sidecar holds, in a fresh context
    series, chosen = _series(series_workspace), at.session_state
    runs, common = list(series.run_keys), {"series": series.key}
    metric, x_axis = chosen[state.Dynamics.METRIC], chosen[state.Dynamics.X_AXIS]
    expected = {
        state.Dynamics.HEATMAP: ("dynamics_heatmap", {"metric": metric, "column": None}),
        state.Dynamics.CURVES: ("dynamics_curves", {"metric": metric, "column": None, "x_axis": x_axis,
                                                    "over": chosen[state.Dynamics.CURVES_OVER]}),
        state.Dynamics.SIMILARITY_CHART: ("convergence_curves", {"metric": chosen[state.Dynamics.SIMILARITY],
                                                                 "x_axis": x_axis}),
        state.Dynamics.MAP: ("checkpoint_map", {"layer": chosen[state.Dynamics.LAYER],
                                                "color_by": chosen[state.Dynamics.COLOUR]}),
    }
    drawn = charts(at)
    for key, (recipe, params) in expected.items():
        assert_page_draws(drawn[key], build_figure(figure_spec(recipe, runs, **common, **params), Store(series_workspace)))


def test_dynamics__probe_asks_for_its_column_and_colours_the_map(app, series_workspace):
    at = app("dynamics.py", series_workspace)
    at.run()
    at.sidebar.selectbox(key=state.Dynamics.METRIC).set_value("probe").run()
    assert not at.exception
    assert at.sidebar.selectbox(key=state.Dynamics.COLUMN).value == "digit"
    button(at, "Compute probe accuracy").click().run()
    assert not at.exception
    heatmap = figures(at)[0]
    assert "probe accuracy (digit)" in heatmap["data"][0]["colorbar"]["title"]["text"]

    assert at.sidebar.selectbox(key=state.Dynamics.COLOUR).value == "digit"  # the first label column
    button(at, "Map logits at every checkpoint").click().run()
    assert not at.exception
    assert "coloured by digit" in " ".join(c.value for c in at.caption)


def test_workspace__stored_runs_tab_lists_the_series(app, series_workspace):
    at = app("workspace.py", series_workspace)
    at.run()
    assert not at.exception
    tables = [t.value for t in at.dataframe]
    listed = [t for t in tables if "checkpoints" in t.columns]
    assert listed and listed[0]["checkpoints"].tolist() == [3]
