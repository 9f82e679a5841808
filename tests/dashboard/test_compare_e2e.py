"""End to end: the Compare page in headless Chromium (the system's) against `streamlit run`.

A workspace with two runs on the same inputs (minilm and its untrained twin, mean pooling,
120 demo sentences). The test clicks a heatmap cell, waits for the two linked maps, draws a
lasso on map A with the mouse and expects the selected inputs outlined in map B (a trace
named "matches (N)").
"""

from __future__ import annotations

import re
from itertools import pairwise

import pytest

pytest.importorskip("playwright")
from browser_helpers import CHART, PLOT, WAIT, assert_no_exception, chart_titles, wait_for_charts, wait_until_idle
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

CELL_WAIT = 60_000  # ms: the cell's maps come in one rerun; a missed click should not hold the test for long


@pytest.fixture(scope="module")
def compare_workspace(tmp_path_factory, minilm):
    import core

    store = core.Store(tmp_path_factory.mktemp("compare-ws"))
    data = core.load_dataset("demo:sentences", limit=120)
    core.extract(minilm, data, layers="all", pooling="mean", store=store)
    twin = core.load_model("minilm", reinit=True, seed=0, device="cpu")
    core.extract(twin, data, layers="all", pooling="mean", store=store)
    assert len(store.list_runs()) == 2
    return store


@pytest.fixture(scope="module")
def server(compare_workspace, streamlit_server):
    return streamlit_server(compare_workspace.root)


def test_compare_heatmap_click_and_linked_lasso(server, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{server}/compare")
    page.wait_for_selector(PLOT, timeout=WAIT)
    wait_for_charts(page, 3)
    wait_until_idle(page)
    assert_no_exception(page)
    titles = chart_titles(page)
    assert any("minilm vs minilm (untrained, seed 0)" in t for t in titles), titles
    heading = page.locator("h4", has_text="Linked maps")
    before = heading.inner_text()

    # ----- click a heatmap cell: layer 1 of A (y) x layer 4 of B (x), not on the best-match line
    heatmap = page.locator(CHART).nth(0)
    heatmap.scroll_into_view_if_needed()
    box = heatmap.locator(".nsewdrag").first.bounding_box()
    n_a = n_b = 7  # minilm: embeddings + 6 blocks, both models
    col, row = 4, 1
    x = box["x"] + (col + 0.5) * box["width"] / n_b
    y = box["y"] + box["height"] - (row + 0.5) * box["height"] / n_a  # first layer at the bottom
    page.mouse.move(x, y)
    expect(heatmap.locator(".hoverlayer .hovertext").first).to_be_visible(timeout=WAIT)  # plotly found the cell
    page.mouse.click(x, y)
    try:  # checked last: the lasso runs anyway
        expect(heading).to_contain_text("encoder.layer.3", timeout=CELL_WAIT)
    except (AssertionError, PlaywrightTimeout):
        pass
    wait_until_idle(page)
    wait_for_charts(page, 3)
    assert_no_exception(page)
    after = heading.inner_text()
    cell_opened = "encoder.layer.0" in after and "encoder.layer.3" in after

    # ----- lasso on map A (the page sets dragmode lasso): a polygon of mouse moves
    map_a = page.locator(CHART).nth(1)
    map_a.scroll_into_view_if_needed()
    area = map_a.locator(".nsewdrag").first.bounding_box()
    cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    w, h = area["width"] * 0.3, area["height"] * 0.3
    polygon = [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h), (cx - w, cy + h), (cx - w, cy - h + 2)]
    page.mouse.move(*polygon[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in pairwise(polygon):
        for t in range(1, 11):
            page.mouse.move(x0 + (x1 - x0) * t / 10, y0 + (y1 - y0) * t / 10)
    page.mouse.up()
    selected = page.get_by_text(re.compile(r"^\d+ inputs selected; they are outlined in both maps"))
    expect(selected).to_be_visible(timeout=WAIT)
    wait_until_idle(page)
    assert_no_exception(page)

    n = int(selected.inner_text().split()[0])
    assert 0 < n <= 120
    for side in (1, 2):  # map A and map B both outline the selection
        expect(page.locator(CHART).nth(side).locator(".legendtext", has_text=f"matches ({n})")).to_have_count(1)
    expect(page.get_by_role("button", name="Clear selection")).to_be_visible()
    assert cell_opened, (
        f"clicking heatmap cell (A encoder.layer.0, B encoder.layer.3) should open those layers' maps; "
        f"heading before the click: {before!r}, after: {after!r}"
    )
