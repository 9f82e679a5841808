"""Dynamics figures of a checkpoint series: built by their recipes, rebuilt from sidecars, and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from core.export.sidecar import figure_spec
from core.recipes import build_figure
from core.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis" / "dynamics"))
from dynamics_series_builder import digits_series


@pytest.fixture(scope="module")
def series_store(tmp_path_factory):
    """(store, series): the digits MLP at initialisation and after epochs 1 and 2, on 100 digits, 3 layers."""
    store = Store(tmp_path_factory.mktemp("dynamics-recipes"))
    return store, digits_series(store)


def _spec(series, figure: str, **params):
    return figure_spec(figure, series.run_keys, series=series.key, **params)


def test_dynamics_heatmap__holds_a_checkpoint_by_layer_matrix_labelled_by_step_and_layer(series_store):
    store, series = series_store
    built = build_figure(_spec(series, "dynamics_heatmap", metric="effective_rank"), store)
    heatmap = built.figure.data[0]
    assert np.asarray(heatmap.z).shape == (3, 3)
    assert list(heatmap.y) == list(series.steps) and list(heatmap.x) == ["fc1", "fc2", "logits"]
    assert heatmap.texttemplate and len(built.table) == 9
    assert "effective rank" in built.caption and built.analysis["parameters"]["series"] == series.key


def test_dynamics_curves__one_curve_per_layer_or_per_checkpoint(series_store):
    store, series = series_store
    per_layer = build_figure(_spec(series, "dynamics_curves", metric="effective_rank", over="step"), store)
    per_step = build_figure(_spec(series, "dynamics_curves", metric="effective_rank", over="layer"), store)
    assert [t.name for t in per_layer.figure.data] == list(series.layers)
    assert [t.name for t in per_step.figure.data] == list(series.steps)
    np.testing.assert_allclose(per_layer.figure.data[1].y, per_step.result.values[:, 1])


def test_convergence_curves__final_point_is_one_and_every_layer_is_marked(series_store):
    store, series = series_store
    built = build_figure(_spec(series, "convergence_curves", metric="linear_cka"), store)
    curves = [t for t in built.figure.data if t.mode == "lines+markers"]
    assert all(t.y[-1] == pytest.approx(1.0) for t in curves)
    assert set(built.analysis["reached_at"]) == set(series.layers)
    assert "0.9" in built.caption


def test_checkpoint_map__one_frame_per_checkpoint_coloured_by_a_label(series_store):
    store, series = series_store
    built = build_figure(_spec(series, "checkpoint_map", layer="fc2", color_by="digit"), store)
    assert [f.name for f in built.figure.frames] == list(series.steps)
    assert built.figure.layout.sliders[0].currentvalue.prefix == "checkpoint: "
    assert len(built.table) == 3 * 100


@pytest.mark.parametrize("figure, params", [
    ("dynamics_heatmap", {"metric": "mutual_knn"}),
    ("convergence_curves", {"metric": "linear_cka", "fraction": 0.8}),
    ("checkpoint_map", {"layer": "fc1", "color_by": "digit"}),
])
def test_dynamics_recipes__round_trip_through_their_sidecars(series_store, tmp_path, figure, params):
    from core.export import export_figure
    from core.report import regenerate

    store, series = series_store
    built = build_figure(_spec(series, figure, **params), store)
    sidecar = export_figure(built.figure, tmp_path, name=built.name, spec=built.spec, store=store,
                            formats=["html", "csv"], table=built.table, analysis=built.analysis, caption=built.caption)
    assert sidecar["spec"]["params"]["series"] == series.key and len(sidecar["runs"]) == 3
    done = regenerate(tmp_path / f"{sidecar['name']}.json", store, formats=["html"])
    assert done.matches and not done.warnings


def _cli(store, *args, capsys):
    from core.cli import main

    code = main(["dynamics", "--workspace", str(store.root), *args])
    return code, capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--series", "no-such-series"], "--series 'no-such-series' is not a series"),
    (["--metric", "curvature"], "needs a per-token series"),
    (["--metric", "effective_rank", "--column", "colour"], "'colour' is not in run"),
    (["--metric", "rank"], "metric='rank' must be one of"),
    (["--similarity", "cosine"], "metric='cosine' must be one of"),
])
def test_cli_dynamics__bad_input_exits_2_with_one_line(series_store, tmp_path, capsys, args, message):
    store, series = series_store
    given = args if args[0] == "--series" else ["--series", series.key, *args]
    code, out = _cli(store, *given, "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_dynamics__writes_the_figures_with_sidecars(series_store, tmp_path, capsys):
    store, series = series_store
    code, out = _cli(store, "--series", series.name, "--metric", "effective_rank", "--similarity", "linear_cka",
                     "--layer", "fc2", "--formats", "html", "--no-zip", "--json", "--out", str(tmp_path / "dyn"),
                     capsys=capsys)
    assert code == 0, out.err
    written = json.loads(out.out)
    assert [f["figure"] for f in written["figures"]] == ["dynamics_heatmap", "dynamics_curves", "convergence_curves",
                                                         "dynamics_heatmap", "checkpoint_map"]
    assert not written["not_drawn"]
    for figure in written["figures"]:
        sidecar = json.loads((tmp_path / "dyn" / "figures" / f"{figure['name']}.json").read_text())
        assert sidecar["spec"]["runs"] == list(series.run_keys)
