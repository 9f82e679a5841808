"""End to end: the Compare page in headless Chromium (the system's) against `streamlit run`.

Workspaces with two runs on the same inputs (minilm and its untrained twin, mean pooling).
On 120 demo sentences the test clicks a heatmap cell, waits for the two linked maps, draws a
lasso on map A with the mouse and expects the selected inputs outlined in map B (a trace
named "matches (N)"). On 400 sentences, a first visit computes the heatmap, then the probe
curves are asked for: the progress texts the page showed are recorded as they change, and
Cancel stops the probes.
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


# every text a progress bar shows, in order, recorded in the page as it changes (however briefly it is shown)
RECORD_PROGRESS = """
window.progressTexts = [];
new MutationObserver(() => {
  for (const bar of document.querySelectorAll('[data-testid="stProgress"]')) {
    const text = bar.innerText.trim();
    if (text && window.progressTexts[window.progressTexts.length - 1] !== text) window.progressTexts.push(text);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


PROBING = r"(fitting the first probes|run \d of 2, minilm)"  # how far the probes are, in words
ELAPSED = r"· (?:(\d+) min )?([0-9.]+) s$"  # the time spent, ending a progress text: "4.2 s", "1 min 05 s"


def _seconds(text: str) -> float:
    minutes, seconds = re.search(ELAPSED, text).groups()
    return 60 * int(minutes or 0) + float(seconds)


def _pair_workspace(root, minilm, n: int):
    import core

    store = core.Store(root)
    data = core.load_dataset("demo:sentences", limit=n)
    core.extract(minilm, data, layers="all", pooling="mean", store=store)
    twin = core.load_model("minilm", reinit=True, seed=0, device="cpu")
    core.extract(twin, data, layers="all", pooling="mean", store=store)
    assert len(store.list_runs()) == 2
    return store


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm, streamlit_server):
    return streamlit_server(_pair_workspace(tmp_path_factory.mktemp("compare-ws"), minilm, 120).root)


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


def test_compare_first_visit_shows_live_progress_and_cancel_stops_the_probes(tmp_path, minilm, streamlit_server,
                                                                            browser):
    url = streamlit_server(_pair_workspace(tmp_path / "ws", minilm, 400).root)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.add_init_script(RECORD_PROGRESS)
    page.goto(f"{url}/compare")
    wait_for_charts(page, 3)  # the heatmap and both maps
    wait_until_idle(page)
    assert_no_exception(page)

    # ----- the probe curves (a click away): the bar names the step, the fits done and the time spent
    page.get_by_role("button", name="Compute the probe curves for topic").click()
    probing = page.locator('[data-testid="stProgress"]', has_text="Probing topic on both models")
    expect(probing).to_be_visible(timeout=WAIT)
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible()
    page.wait_for_function("window.progressTexts.filter(t => t.startsWith('Probing topic')).length >= 3",
                           timeout=WAIT)  # the clock has moved twice
    probing.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "compare-progress.png"))
    cancel.click()
    stopped_note = re.compile(rf"Probing topic was stopped after .+ s \({PROBING}.*\)")
    expect(page.get_by_text(stopped_note)).to_be_visible(timeout=WAIT)
    wait_until_idle(page)
    assert_no_exception(page)
    page.screenshot(path=str(tmp_path / "compare-stopped.png"), full_page=True)
    expect(page.get_by_role("button", name="Probe again")).to_be_visible()
    expect(page.locator('[data-testid="stProgress"]')).to_have_count(0)  # the rerun did not start it again
    assert "Linear probe" not in " ".join(chart_titles(page))  # no curves from partial work
    wait_for_charts(page, 3)  # the heatmap and both maps stay

    # ----- what the bars said: the probes' clock moved while a batch of fits reported nothing; the heatmap's
    # step (shown if it lasted long enough to be drawn) named the layer pairs done and the time spent
    texts = page.evaluate("window.progressTexts")
    (tmp_path / "progress-texts.txt").write_text("\n".join(texts))  # what the bars said, to read after a failure
    similarity = [t for t in texts if t.startswith("linear CKA of minilm with minilm (untrained, seed 0): ")]
    pairs = re.compile(r"(preparing layer \S+ of run [AB] \(\d+ of 14 layers\) · )?\d+ of 49 layer pairs done · ")
    assert all(pairs.search(t) and re.search(ELAPSED, t) for t in similarity), texts
    probes = [t for t in texts if re.match(f"Probing topic on both models: {PROBING}", t)]
    assert len(probes) >= 2 and all(re.search(ELAPSED, t) for t in probes), texts
    seconds = [_seconds(t) for t in probes]
    assert seconds == sorted(seconds) and seconds[-1] > seconds[0], probes
