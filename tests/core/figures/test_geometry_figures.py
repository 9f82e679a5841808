"""core.figures.geometry: traces, titles, axis titles and units of the geometry and lens figures."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from core.analysis.geometry import GeometryResult
from core.analysis.lens import LensResult
from core.figures.geometry import (
    RELATIVE_DEPTH_TITLE,
    curvature_by_layer_figure,
    geometry_curves,
    kl_curve,
    lens_heatmap,
    metric_variant,
    trajectory_figure,
)
from core.recipes.geometry import duplicates_note, geometry_table


def _result(n_layers: int, *, curvature_rad: float = math.pi / 2, variant: str = "signed", nan_at=()) -> GeometryResult:
    """A GeometryResult with constant curvature (band +/- 0.1 rad) and a rising ID."""
    mean = np.full(n_layers, curvature_rad)
    mean[list(nan_at)] = np.nan
    ident = np.linspace(5, 10, n_layers)
    return GeometryResult(
        layer_names=tuple(f"layers.{i}" for i in range(n_layers)),
        metrics=("curvature", "intrinsic_dimension"),
        mean={"curvature": mean, "intrinsic_dimension": ident},
        q25={"curvature": mean - 0.1, "intrinsic_dimension": np.full(n_layers, np.nan)},
        q75={"curvature": mean + 0.1, "intrinsic_dimension": np.full(n_layers, np.nan)},
        n_skipped={"curvature": np.zeros(n_layers, int), "intrinsic_dimension": np.zeros(n_layers, int)},
        reasons={"curvature": None, "intrinsic_dimension": None},
        layer_reasons={"curvature": (None,) * n_layers, "intrinsic_dimension": (None,) * n_layers},
        params={"curvature_variant": variant, "id_method": "twonn", "id_fraction": 0.9},
    )


def _lines(fig):
    return [t for t in fig.data if t.mode and "lines" in t.mode and t.fill != "toself"]


def _bands(fig):
    return [t for t in fig.data if t.fill == "toself"]


# ----- geometry_curves -----------------------------------------------------------------------
def test_geometry_curves__one_line_and_band_per_model_in_degrees():
    fig = geometry_curves({"deep": _result(31), "shallow": _result(7)}, "curvature")
    lines, bands = _lines(fig), _bands(fig)
    assert len(lines) == 2 and len(bands) == 2
    assert [t.name for t in lines] == ["deep · signed (Hosseini)", "shallow · signed (Hosseini)"]
    np.testing.assert_allclose(lines[0].y, 90.0)  # pi/2 rad drawn in degrees
    assert max(bands[0].y) == pytest.approx(math.degrees(math.pi / 2 + 0.1))
    assert fig.layout.yaxis.title.text == "curvature (degrees)"
    assert fig.layout.title.text == "Trajectory curvature by layer"


def test_geometry_curves__relative_depth_lines_up_models_of_different_depth():
    fig = geometry_curves({"deep": _result(31), "shallow": _result(7)}, "curvature")
    deep, shallow = _lines(fig)
    assert deep.x[0] == shallow.x[0] == 0.0 and deep.x[-1] == shallow.x[-1] == 1.0
    assert fig.layout.xaxis.title.text == RELATIVE_DEPTH_TITLE == "relative depth (0 = embeddings, 1 = last layer)"
    by_layer = geometry_curves({"deep": _result(31)}, "curvature", relative_depth=False)
    assert list(_lines(by_layer)[0].x) == list(range(31))
    assert by_layer.layout.xaxis.title.text.startswith("layer")


def test_geometry_curves__variants_named_in_legend_and_controls_dashed():
    results = {"m · signed (Hosseini)": _result(5), "m · abs (Skean)": _result(5, variant="abs"),
               "m (untrained)": _result(5)}
    fig = geometry_curves(results, "curvature", controls={"m (untrained)"})
    names = [t.name for t in _lines(fig)]
    assert names == ["m · signed (Hosseini)", "m · abs (Skean)", "m (untrained) · signed (Hosseini)"]
    dashes = [t.line.dash for t in _lines(fig)]
    assert dashes == ["solid", "solid", "dash"]


def test_geometry_curves__dataset_metric_has_no_band_and_keeps_units():
    fig = geometry_curves({"m": _result(5)}, "intrinsic_dimension")
    assert not _bands(fig)
    assert _lines(fig)[0].name == "m · TwoNN, lowest 90% of μ"
    np.testing.assert_allclose(_lines(fig)[0].y, np.linspace(5, 10, 5))
    assert fig.layout.yaxis.title.text == "intrinsic dimension (dimensions)"


def test_metric_variant__names_the_reference_conventions_in_the_legend():
    entropy = replace(_result(4), metrics=("dataset_entropy",), mean={"dataset_entropy": np.linspace(0.2, 0.6, 4)},
                      q25={"dataset_entropy": np.full(4, np.nan)}, q75={"dataset_entropy": np.full(4, np.nan)},
                      params={"entropy_alpha": 1.0, "entropy_variant": "skean"})
    stored_before = replace(entropy, params={"entropy_alpha": 2.0})  # predates the option: the default, unnamed
    assert metric_variant(entropy, "dataset_entropy") == "skean, α=1"
    assert metric_variant(stored_before, "dataset_entropy") == "α=2"
    fig = geometry_curves({"m": entropy, "m · α=2": stored_before}, "dataset_entropy")
    assert [t.name for t in _lines(fig)] == ["m · skean, α=1", "m · α=2"]
    zero = replace(_result(4, variant="abs"), params={"curvature_variant": "abs", "curvature_degenerate": "zero"})
    assert metric_variant(zero, "curvature") == "abs (Skean), zero-length steps = 0"
    assert metric_variant(_result(4, variant="abs"), "curvature") == "abs (Skean)"


def test_geometry_table_and_note__duplicates_removed_before_the_id_fit():
    counted = replace(_result(3), n_duplicates=np.array([0, 12, 0]))
    results = {"m": counted, "old": _result(3)}  # "old": stored before duplicates were counted
    table = geometry_table(results, "intrinsic_dimension")
    assert table["duplicates removed"].iloc[:3].tolist() == [0, 12, 0]
    assert table["duplicates removed"].iloc[3:].isna().all()
    assert "duplicates removed" not in geometry_table(results, "curvature")
    assert duplicates_note(results) == ("Duplicate points removed before the intrinsic-dimension fit (a copy is at "
                                        "distance 0): m: 12 at layers.1.")
    assert duplicates_note({"m": replace(counted, n_duplicates=np.zeros(3, int))}) is None


def test_geometry_curves__nan_layers_stay_gaps():
    fig = geometry_curves({"m": _result(6, nan_at=[2])}, "curvature")
    line = _lines(fig)[0]
    assert math.isnan(line.y[2]) and line.connectgaps is False
    assert len(_bands(fig)[0].x) == 2 * 5  # the band skips the undefined layer


def test_geometry_curves__rejects_unknown_metric_and_empty_input():
    with pytest.raises(ValueError, match="prompt_entropy"):
        geometry_curves({"m": _result(3)}, "prompt_entropy")
    with pytest.raises(ValueError, match="empty"):
        geometry_curves({}, "curvature")


# ----- trajectory ------------------------------------------------------------------------------
def _markers(fig):
    return next(t for t in fig.data if t.mode == "markers+text")


def test_trajectory_figure__straight_path_has_zero_angles_and_token_labels():
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(16)
    X = np.outer(np.arange(5.0), direction)  # (5, 16) points on a line
    tokens = ["a", "b", "c", "d", "<e>"]
    fig = trajectory_figure(X, tokens, layer="layers.3")
    points = _markers(fig)
    assert list(points.text) == ["a", "b", "c", "d", "&lt;e&gt;"]  # escaped: plotly reads HTML
    assert "0.0°" in points.hovertext[2]
    assert "—" in points.hovertext[0] and "—" in points.hovertext[-1]  # no angle at the ends
    assert len(fig.layout.annotations) == 4  # one arrow per step
    assert fig.layout.title.text == "Token trajectory at layers.3 · curvature 0.0°"
    assert fig.layout.xaxis.title.text.startswith("PC 1 (100%")


def test_trajectory_figure__reversing_path_reads_180_degrees():
    X = np.array([[0.0, 0], [1, 0], [0, 0], [1, 0]])
    fig = trajectory_figure(X, list("abcd"), layer="l")
    assert "180.0°" in _markers(fig).hovertext[1]
    assert "curvature 180.0°" in fig.layout.title.text


def test_trajectory_figure__skip_first_drops_it_from_picture_not_from_angles():
    X = np.array([[1000.0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 1, 0]])
    full = trajectory_figure(X, list("abcde"), layer="l")
    skipped = trajectory_figure(X, list("abcde"), layer="l", skip_first=True)
    assert list(_markers(skipped).text) == list("bcde")
    assert len(skipped.layout.annotations) == 3
    assert _markers(skipped).hovertext[0] == _markers(full).hovertext[1]  # same full-space angle at "b"
    assert "first token not drawn" in skipped.layout.title.text


def test_trajectory_figure__two_tokens_say_curvature_is_undefined():
    fig = trajectory_figure(np.eye(2, 4), ["a", "b"], layer="l")
    assert "undefined" in fig.layout.title.text


# ----- curvature by layer ------------------------------------------------------------------------
def test_curvature_by_layer_figure__degrees_with_optional_reference():
    values = [math.pi / 2, math.pi / 3, float("nan")]
    fig = curvature_by_layer_figure(["a", "b", "c"], values, input_label="input 7")
    (line,) = _lines(fig)
    assert line.name == "input 7"
    np.testing.assert_allclose(line.y[:2], [90.0, 60.0])
    assert math.isnan(line.y[2])
    assert fig.layout.yaxis.title.text == "curvature (degrees)"
    with_reference = curvature_by_layer_figure(["a", "b", "c"], values, reference=_result(3))
    assert len(_bands(with_reference)) == 1
    assert any(t.name.startswith("all inputs") for t in _lines(with_reference))
    with pytest.raises(ValueError, match="3 layers"):
        curvature_by_layer_figure(["a", "b", "c"], [0.1, 0.2])


# ----- logit lens ----------------------------------------------------------------------------------
def _lens(L: int = 3, T: int = 4, k: int = 2) -> LensResult:
    probs = np.linspace(0.9, 0.1, L * T * k).reshape(L, T, k)
    tokens = np.array([[[f"t{li}{t}{j}" for j in range(k)] for t in range(T)] for li in range(L)])
    tokens[0, 0, 0] = "<b>"
    kl = np.arange(L * T, dtype=float).reshape(L, T)[::-1].copy()
    return LensResult(
        model_name="toy", text="a b c d", layer_names=tuple(f"layers.{i}" for i in range(L)),
        tokens=("a", " b", "\n", " d", *(f" w{t}" for t in range(4, T)))[:T], token_ids=np.arange(T),
        top_tokens=tokens, top_ids=np.zeros((L, T, k), int),
        top_probs=probs, kl_to_final=kl, mean_kl=kl.mean(axis=1), final_top_tokens=tuple(tokens[-1, :, 0]),
    )


def test_lens_heatmap__cells_hold_top_token_coloured_by_probability():
    result = _lens()
    fig = lens_heatmap(result)
    (heat,) = fig.data
    assert heat.type == "heatmap"
    np.testing.assert_allclose(np.asarray(heat.z), result.top_probs[:, :, 0])
    assert heat.text[0][0] == "&lt;b&gt;" and heat.text[1][2] == "t120"
    assert heat.colorbar.title.text == "probability"
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)
    assert list(fig.layout.xaxis.ticktext) == ["a", " b", "↵", " d"]
    assert list(fig.layout.yaxis.ticktext) == ["0 · layers.0", "1 · layers.1", "2 · layers.2"]
    assert fig.layout.yaxis.title.text == "layer"
    assert "predicted next token" in fig.layout.xaxis.title.text
    assert fig.layout.title.text.startswith("Logit lens · toy")


def test_lens_heatmap__position_window():
    fig = lens_heatmap(_lens(T=6), positions=(2, 5))
    assert list(fig.data[0].x) == [2, 3, 4]
    assert np.asarray(fig.data[0].z).shape == (3, 3)
    with pytest.raises(ValueError, match="positions"):
        lens_heatmap(_lens(T=6), positions=(4, 9))


def test_kl_curve__mean_kl_per_layer_in_nats():
    result = _lens()
    fig = kl_curve(result)
    (line,) = _lines(fig)
    np.testing.assert_allclose(line.y, result.mean_kl)
    assert len(_bands(fig)) == 1
    assert fig.layout.yaxis.title.text == "KL(final ‖ layer) (nats)"
    assert fig.layout.xaxis.title.text.startswith("layer")
