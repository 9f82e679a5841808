"""End to end: the Training dynamics page in headless Chromium (the system's) against `streamlit run`.

From a fresh workspace: the empty state's button trains and extracts the bundled digits-MLP series
with live progress, then the heatmap and curves, the convergence curves and the animated map are
drawn. Screenshots go to LAYERSCOPE_SCREENSHOTS when set (to look at them), else the test's tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from browser_helpers import (
    CHART,
    WAIT,
    assert_no_exception,
    chart_titles,
    wait_until_idle,
)
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

SERIES_WAIT = 600_000  # ms: training digits-mlp and extracting its 22 checkpoints on a busy CPU


@pytest.fixture(scope="module")
def server(tmp_path_factory, streamlit_server):
    return streamlit_server(tmp_path_factory.mktemp("dynamics-ws"))


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LAYERSCOPE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait_for_title(page, text: str) -> None:
    """A chart titled with `text` is drawn."""
    page.locator(f"{CHART} .gtitle", has_text=text).first.wait_for(timeout=WAIT)


def _axis_titles(page, index: int) -> list[str]:
    """The x and y axis titles of the `index`-th chart on the page."""
    return page.locator(CHART).nth(index).locator(".g-xtitle, .g-ytitle").all_text_contents()


def test_dynamics_page_builds_the_digits_series_and_draws_it(server, browser, tmp_path):
    shots = _shots(tmp_path)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{server}/dynamics")
    build = page.get_by_role("button", name="Train and extract the digits-MLP series")
    build.wait_for(timeout=WAIT)
    expect(page.get_by_text("python -m core series --model <folder of checkpoints>")).to_be_visible()
    assert_no_exception(page)

    build.click()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible(timeout=WAIT)  # live progress with Cancel
    expect(page.get_by_text("Training and extracting the digits-MLP series:")).to_be_visible()
    page.get_by_text("checkpoint 1 of 22").first.wait_for(timeout=SERIES_WAIT)  # which checkpoint, how many
    page.screenshot(path=str(shots / "dynamics-building.png"))

    metric = page.get_by_role("button", name="Compute effective rank")
    metric.wait_for(timeout=SERIES_WAIT)
    wait_until_idle(page)
    expect(page.get_by_text("step 0 → step 300 · 6 layers").first).to_be_visible()  # the series picker's caption
    # each click waits for its own chart: a click during a computation would interrupt it
    metric.click()
    _wait_for_title(page, "effective rank (Roy & Vetterli) over training")
    page.get_by_role("button", name="Compute Linear CKA to the final checkpoint").click()
    _wait_for_title(page, "linear CKA to the final checkpoint")
    page.get_by_role("button", name="Map logits at every checkpoint").click()
    _wait_for_title(page, "PC map across checkpoints")
    wait_until_idle(page)
    assert_no_exception(page)

    titles = chart_titles(page)
    assert titles[0].startswith("effective rank (Roy & Vetterli) · digits-mlp:series"), titles
    assert titles[1].startswith("effective rank (Roy & Vetterli) over training"), titles
    assert titles[2].startswith("linear CKA to the final checkpoint"), titles
    assert titles[3].startswith("digits-mlp:series · logits · PC map across checkpoints"), titles
    assert _axis_titles(page, 0) == ["layer", "checkpoint"]
    # the digits series is saved at log-spaced steps: the page opens with one even space per checkpoint
    assert _axis_titles(page, 1) == ["checkpoint (evenly spaced)", "effective rank (Roy & Vetterli) (dimensions)"]
    assert _axis_titles(page, 2)[0] == "checkpoint (evenly spaced)"
    expect(page.locator(CHART).nth(3).locator(".slider-container")).to_be_visible()  # the checkpoint slider
    assert page.locator(CHART).nth(3).get_by_text("checkpoint: step 0").count() == 1
    page.screenshot(path=str(shots / "dynamics.png"), full_page=True)
    for i, name in enumerate(("heatmap", "curves", "convergence", "map")):
        page.locator(CHART).nth(i).screenshot(path=str(shots / f"dynamics-{name}.png"))
    assert not page.get_by_role("button", name="Map logits at every checkpoint").count()  # gone once clicked
