"""Details of the probe, logit-lens and trajectory figures: labels inside the plot area, short cell text, one word."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.lens import LensResult
from core.analysis.probes.result import make_result
from core.export.formats import image_size
from core.export.publication import publication_style
from core.figures.geometry import trajectory_figure
from core.figures.lens import CELL_CHARS, lens_heatmap
from core.figures.probes import probe_curve

SCREEN_HEIGHT = 450  # plotly's height where the page leaves it to plotly (st.plotly_chart on the Probes page)
LEGEND_PX = 40  # the horizontal legend under the plot takes about one line of the bottom margin


def _probe(best: float, *, metric: str = "accuracy", chance: float = 0.25):
    """A ProbeResult rising to `best` at the last of 7 layers (5 folds, spread 0.003), control flat at 0.3."""
    rng = np.random.default_rng(0)
    scores = np.linspace(0.6, best, 7)[:, None] + rng.normal(0, 0.003, (7, 5))
    scores[-1] = best
    return make_result([f"layers.{i}" for i in range(7)], scores, np.full((7, 5), 0.3), chance=chance,
                       metric=metric, n=200, n_dropped=0, params={"control": "shuffled"}, details={})


def _star(fig):
    return next(t for t in fig.data if t.name.startswith("best layer"))


# ----- probes: the best score's label stays inside the plot area -----------------------------------------
@pytest.mark.parametrize("best", [0.97, 0.999, 1.0])
@pytest.mark.parametrize("publication", [False, True])
def test_probe_curve__best_score_label_fits_under_the_top_of_the_y_range(best, publication):
    fig = probe_curve(_probe(best))
    height = image_size(publication_style(fig))[1] if publication else SCREEN_HEIGHT
    star = _star(fig)
    low, high = fig.layout.yaxis.range
    margin = fig.layout.margin
    plot_px = height - margin.t - margin.b - LEGEND_PX
    font_px = (publication_style(fig).layout.font.size if publication else fig.layout.font.size) or 13
    label_px = star.marker.size / 2 + 1.3 * font_px + 4  # from the point: half the star, the text line, its gap
    assert star.textposition == "top center" and star.y[0] == pytest.approx(best)
    assert high - best >= label_px * (high - low) / plot_px, (high, label_px)
    assert low == 0.0  # accuracy keeps its zero


def test_probe_curve__regression_range_holds_every_curve_and_the_label():
    result = _probe(0.8, metric="r2", chance=0.0)
    result.scores[0] -= 1.5  # a first layer far below the mean's baseline
    fig = probe_curve(make_result(result.layer_names, result.scores, result.control_scores, chance=0.0,
                                  metric="r2", n=200, n_dropped=0, params=result.params, details={}))
    low, high = fig.layout.yaxis.range
    lowest = min(min(t.y) for t in fig.data if t.y is not None)
    assert low < lowest and high > 0.8 + 0.1 * (high - low)


# ----- probes: one word for the no-information score -----------------------------------------------------
def test_probe_curve__baseline_is_chance_for_accuracy_and_the_mean_for_r2():
    names = [t.name for t in probe_curve(_probe(0.9)).data]
    assert "chance (0.250)" in names and not any("mean" in n for n in names)
    names = [t.name for t in probe_curve(_probe(0.9, metric="r2", chance=0.0)).data]
    assert "baseline: predict the mean (0.000)" in names and not any("chance" in n for n in names)


# ----- logit lens: long tokens are cut in their cell, whole in the hover -------------------------------------
def _lens_with(top: str, *, L: int = 2, T: int = 3) -> LensResult:
    tokens = np.full((L, T, 2), " ok", dtype=object)
    tokens[1, 2, 0] = top
    probs = np.full((L, T, 2), 0.4)
    kl = np.zeros((L, T))
    return LensResult(
        model_name="toy", text="a b c", layer_names=("layers.0", "layers.1"), tokens=("a", " b", " c"),
        token_ids=np.arange(T), top_tokens=tokens, top_ids=np.zeros((L, T, 2), int), top_probs=probs,
        kl_to_final=kl, mean_kl=kl.mean(axis=1), final_top_tokens=tuple(tokens[-1, :, 0]),
    )


def test_lens_heatmap__long_token_is_cut_in_its_cell_and_whole_in_the_hover():
    fig = lens_heatmap(_lens_with(" supercalifragilistic"))
    (heat,) = fig.data
    cell = heat.text[1][2]
    assert len(cell) == CELL_CHARS and cell.endswith("…") and cell.startswith(" superc")
    assert heat.text[0][0] == " ok"  # short tokens unchanged
    assert " supercalifragilistic" in heat.hovertext[1][2]


def test_lens_heatmap__cut_happens_before_html_escaping():
    (heat,) = lens_heatmap(_lens_with("<" * 12)).data
    assert heat.text[1][2] == "&lt;" * (CELL_CHARS - 1) + "…"  # no entity split in half
    assert "&lt;" * 12 in heat.hovertext[1][2]


# ----- trajectory: labels face the middle, so the ones at the edges stay inside ------------------------------
def test_trajectory_figure__first_token_far_away_is_labelled_towards_the_others():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 16)) * 0.3
    X[0] += 8.0  # an attention sink: the first token far from the rest, at one end of PC 1
    fig = trajectory_figure(X, ["<|im_start|>", " The", " cat", " sat", " on", "."], layer="l")
    points = next(t for t in fig.data if t.mode == "markers+text")
    x, y = np.asarray(points.x), np.asarray(points.y)
    positions = list(points.textposition)
    first_side = "right" if x[0] < x[1:].min() else "left"  # towards the other tokens
    assert positions[0].endswith(first_side)
    top, bottom = int(np.argmax(y)), int(np.argmin(y))
    assert positions[top].startswith("bottom") and positions[bottom].startswith("top")
