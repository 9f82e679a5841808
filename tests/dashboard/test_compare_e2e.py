"""End to end: the Compare page in headless Chromium (the system's) against `streamlit run`.

A workspace with two runs on the same inputs (minilm and its untrained twin, mean pooling,
120 demo sentences). The test clicks a heatmap cell, waits for the two linked maps, draws a
lasso on map A with the mouse and expects the selected inputs outlined in map B (a trace
named "matches (N)").
"""

from __future__ import annotations

from itertools import pairwise

import pytest

pytestmark = pytest.mark.slow

CHART = '[data-testid="stPlotlyChart"]'
PLOT = f"{CHART} .main-svg"
TIMEOUT = 180_000  # ms: the first script run imports torch and computes the similarity matrix


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


def assert_no_exception(page):
    boxes = page.query_selector_all('[data-testid="stException"]')
    assert not boxes, boxes[0].inner_text()[:2000]


def wait_idle(page, ms: int = 1500):
    """Wait until streamlit is no longer running the script (the status widget goes away)."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT
    )
    page.wait_for_timeout(ms)


def charts(page) -> int:
    return page.locator(PLOT).count()


def linked_heading(page) -> str:
    return page.locator("h4", has_text="Linked maps").inner_text()


@pytest.fixture(scope="module")
def server(compare_workspace, streamlit_server):
    return streamlit_server(compare_workspace.root)


def test_compare_heatmap_click_and_linked_lasso(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{server}/compare")
    page.wait_for_selector(PLOT, timeout=TIMEOUT)
    page.wait_for_function(f"document.querySelectorAll('{PLOT}').length >= 3", timeout=TIMEOUT)
    wait_idle(page)
    assert_no_exception(page)
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    before = linked_heading(page)

    # ----- click a heatmap cell: layer 1 of A (y) x layer 4 of B (x), not on the best-match line
    heatmap = page.locator(CHART).nth(0)
    heatmap.scroll_into_view_if_needed()
    drag = heatmap.locator(".nsewdrag").first
    box = drag.bounding_box()
    n_a = n_b = 7  # minilm: embeddings + 6 blocks, both models
    col, row = 4, 1
    x = box["x"] + (col + 0.5) * box["width"] / n_b
    y = box["y"] + box["height"] - (row + 0.5) * box["height"] / n_a  # first layer at the bottom
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    wait_idle(page)
    page.wait_for_function(f"document.querySelectorAll('{PLOT}').length >= 3", timeout=TIMEOUT)
    page.screenshot(path=str(tmp_path / "compare_cell.png"), full_page=True)
    assert_no_exception(page)
    after = linked_heading(page)
    cell_opened = "encoder.layer.0" in after and "encoder.layer.3" in after  # checked last: the lasso runs anyway

    # ----- lasso on map A (the page sets dragmode lasso): a polygon of mouse moves
    map_a = page.locator(CHART).nth(1)
    map_a.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
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
    wait_idle(page, 2500)
    page.wait_for_selector("text=inputs selected", timeout=TIMEOUT)
    wait_idle(page)
    page.screenshot(path=str(tmp_path / "compare_lasso.png"), full_page=True)
    assert_no_exception(page)

    map_b = page.locator(CHART).nth(2)
    assert map_b.locator(".legendtext", has_text="matches").count() >= 1, "map B shows no 'matches (N)' trace"
    assert page.locator(CHART).nth(1).locator(".legendtext", has_text="matches").count() >= 1
    for name in ("compare.png", "compare_cell.png", "compare_lasso.png"):
        assert (tmp_path / name).stat().st_size > 20_000
    assert cell_opened, (
        f"clicking heatmap cell (A encoder.layer.0, B encoder.layer.3) should open those layers' maps; "
        f"heading before the click: {before!r}, after: {after!r}"
    )
