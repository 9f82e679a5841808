"""core.figures.interventions: traces, axis titles and drawn values of the steering and erasure figures."""

from __future__ import annotations

import numpy as np
import pytest

from core.figures.interventions import (
    erasure_accuracy,
    erasure_change,
    steering_continuations,
    steering_kl,
    steering_readout,
    steering_tokens,
)
from core.interventions.records import ErasureResult, SteeringResult


def _steering(alphas=(4.0, -4.0, 0.0), prompts=("I think", "The film was"), k=3) -> SteeringResult:
    rng = np.random.default_rng(0)
    A, P = len(alphas), len(prompts)
    return SteeringResult(
        model_name="smollm2", layer="model.layers.15", direction_name="sentiment: positive - negative",
        direction_key="", position="all", scale=12.5, alphas=np.array(alphas), prompts=tuple(prompts),
        continuations=np.array([[f"text {a} {p}" for p in range(P)] for a in range(A)]),
        kl=rng.random((A, P)), gained_tokens=np.array([[f"g{a}{j}" for j in range(k)] for a in range(A)]),
        gained_shift=rng.random((A, k)), lost_tokens=np.array([[f"l{a}{j}" for j in range(k)] for a in range(A)]),
        lost_shift=-rng.random((A, k)), readout_label="sentiment", readout_class="positive",
        readout_layers=("model.layers.15", "model.layers.20"), readout=rng.random((A, 2)),
        continuation_readout=rng.random(A),
    )


def _erasure(method="leace", layers=3) -> ErasureResult:
    return ErasureResult(
        model_name="minilm", run_key="abc", layer="encoder.layer.3", method=method, label="topic",
        layer_names=tuple(f"encoder.layer.{3 + i}" for i in range(layers)),
        accuracy_before=np.linspace(0.9, 0.95, layers), accuracy_after=np.linspace(0.26, 0.6, layers), chance=0.25,
        mean_squared_change=1.5, mean_difference_change=2.5, relative_change=0.1, loss_before=np.nan,
        loss_after=np.nan, params={"n_folds": 5},
    )


def test_steering_continuations__one_column_per_alpha_with_the_texts():
    result = _steering()
    table = steering_continuations(result).data[0]
    assert table.type == "table"
    assert len(table.header.values) == 1 + 3
    assert "alpha = -4" in table.header.values[2]
    assert list(table.cells.values[0]) == list(result.prompts)
    assert list(table.cells.values[2]) == list(result.continuations[1])


def test_steering_continuations__escapes_markup_in_texts():
    result = _steering(prompts=("<b>x</b>",))
    assert steering_continuations(result).data[0].cells.values[0][0] == "&lt;b&gt;x&lt;/b&gt;"


def test_steering_readout__a_line_per_layer_plus_continuations_sorted_by_alpha():
    result = _steering()
    fig = steering_readout(result)
    assert len(fig.data) == 2 + 1
    order = np.argsort(result.alphas)
    assert list(fig.data[0].x) == [-4.0, 0.0, 4.0]
    np.testing.assert_array_equal(fig.data[1].y, result.readout[order, 1])
    np.testing.assert_array_equal(fig.data[2].y, result.continuation_readout[order])
    assert "model.layers.20" in fig.data[1].name and fig.data[2].line.dash == "dash"
    assert fig.layout.xaxis.title.text.startswith("alpha (× 12.5")
    assert "sentiment = positive" in fig.layout.yaxis.title.text


def test_steering_kl__mean_over_prompts_with_band():
    result = _steering()
    fig = steering_kl(result)
    line = fig.data[1]
    order = np.argsort(result.alphas)
    np.testing.assert_allclose(line.y, result.kl[order].mean(axis=1))
    assert fig.data[0].fill == "toself"
    assert "nats" in fig.layout.yaxis.title.text and "alpha" in fig.layout.xaxis.title.text


def test_steering_tokens__a_panel_per_nonzero_alpha_gained_and_lost():
    result = _steering(k=3)
    fig = steering_tokens(result)
    assert len(fig.data) == 2 * 2  # alphas 4 and -4, alpha = 0 left out
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["alpha = 4", "alpha = -4"]
    lost, gained = fig.data[0], fig.data[1]
    np.testing.assert_array_equal(gained.x, result.gained_shift[0])
    assert list(lost.y) == list(result.lost_tokens[0])
    assert (np.asarray(lost.x) < 0).all() and (np.asarray(gained.x) > 0).all()
    assert [t.showlegend for t in fig.data] == [True, True, False, False]


def test_erasure_accuracy__before_after_and_chance_with_layer_ticks():
    result = _erasure()
    fig = erasure_accuracy(result)
    assert [t.name for t in fig.data] == ["before erasure", "after LEACE at encoder.layer.3",
                                          "chance (0.250, majority class)"]
    np.testing.assert_array_equal(fig.data[1].y, result.accuracy_after)
    assert list(fig.data[2].y) == [0.25, 0.25]
    assert list(fig.layout.xaxis.ticktext) == ["3", "4", "5"]
    assert "5-fold CV" in fig.layout.yaxis.title.text


@pytest.mark.parametrize("method, bars", [("leace", ["LEACE", "mean-difference projection"]),
                                          ("mean_difference", ["mean-difference projection"])])
def test_erasure_change__method_beside_mean_difference(method, bars):
    result = _erasure(method=method)
    bar = erasure_change(result).data[0]
    assert list(bar.x) == bars
    assert bar.y[0] == pytest.approx(1.5)
    if len(bars) == 2:
        assert bar.y[1] == pytest.approx(2.5)


def test_readout_layers__a_run_without_the_steered_layer_reads_from_its_later_blocks():
    from core.errors import LayerscopeError
    from core.recipes.interventions import readout_layers

    run = ["model.layers.6", "model.layers.12", "model.layers.15", "model.layers.29"]
    assert readout_layers(run, "model.layers.10") == ["model.layers.12", "model.layers.15", "model.layers.29"]
    assert readout_layers(run, "model.layers.12")[0] == "model.layers.12"
    with pytest.raises(LayerscopeError, match="no layer at or after the steered layer 'model.layers.30'"):
        readout_layers(run, "model.layers.30")
