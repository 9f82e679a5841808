"""End to end: the Layer explorer in headless Chromium (the system's) against `streamlit run`.

A fresh workspace (minilm on 150 demo sentences, no map computed yet) on a fresh server:
UMAP replaces the PCA map by itself, with a note whose elapsed time moves meanwhile, and a
box dragged on the map narrows the table of inputs under it.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")
from browser_helpers import CHART, PLOT, WAIT, assert_no_exception, wait_until_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

N_INPUTS = 150
UMAP_WAIT = 900_000  # ms: numba compiles UMAP on a fresh server (about a minute; 7 min seen on a saturated 2-core box)
SO_FAR = re.compile(r"(\d+) s so far")
MOVED = """([first]) => {
  const note = [...document.querySelectorAll('[data-testid="stAlert"]')].find(e => e.innerText.includes('UMAP coming'));
  const seconds = note && note.innerText.match(/(\\d+) s so far/);
  return seconds !== null && seconds !== undefined && Number(seconds[1]) > first;
}"""


@pytest.fixture(scope="module")
def fresh_workspace(tmp_path_factory, minilm):
    import core

    store = core.Store(tmp_path_factory.mktemp("explorer-ws"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=N_INPUTS), layers="all", pooling="mean",
                 store=store)
    return store


@pytest.fixture(scope="module")
def server(fresh_workspace, streamlit_server):
    return streamlit_server(fresh_workspace.root)


def open_explorer(browser, server):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{server}/explorer")
    page.wait_for_selector(PLOT, timeout=WAIT)
    wait_until_idle(page)
    assert_no_exception(page)
    return page


def test_umap_replaces_the_pca_map_by_itself(server, browser):
    page = open_explorer(browser, server)
    page.evaluate("window.notReloaded = true")  # gone if the page were loaded again
    page.locator('[data-testid="stRadio"] label', has_text=re.compile(r"^UMAP$")).click()
    note = page.locator('[data-testid="stAlert"]', has_text="UMAP coming")
    expect(note).to_be_visible(timeout=WAIT)
    expect(page.locator(f"{CHART} .gtitle", has_text=" · PC map of demo:sentences")).to_be_visible()  # meanwhile
    first = int(SO_FAR.search(note.inner_text()).group(1))
    page.wait_for_function(MOVED, arg=[first], timeout=60_000)  # the elapsed time moves

    page.locator(f"{CHART} .gtitle", has_text="UMAP map of demo:sentences").wait_for(timeout=UMAP_WAIT)
    wait_until_idle(page)
    expect(note).to_have_count(0)
    assert page.locator(f"{CHART} .xtitle").first.text_content() == "UMAP 1"  # an SVG text: no inner_text
    assert page.evaluate("window.notReloaded === true")
    assert_no_exception(page)


def test_box_on_the_map_narrows_the_table_and_show_all_restores_it(server, browser):
    page = open_explorer(browser, server)
    every = page.get_by_text(re.compile(rf"^All {N_INPUTS} inputs shown"))
    expect(every).to_be_visible()
    chart = page.locator(CHART).first
    chart.scroll_into_view_if_needed()
    area = chart.locator(".nsewdrag").first.bounding_box()  # the plot area (the page sets dragmode select)
    x0, y0 = area["x"] + 0.3 * area["width"], area["y"] + 0.3 * area["height"]
    x1, y1 = area["x"] + 0.7 * area["width"], area["y"] + 0.7 * area["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()

    picked = page.get_by_text(re.compile(r"^\d+ inputs picked by the box or lasso on the map"))
    expect(picked).to_be_visible(timeout=WAIT)
    wait_until_idle(page)
    assert_no_exception(page)
    n = int(picked.inner_text().split()[0])
    assert 0 < n < N_INPUTS
    expect(chart.locator(".legendtext", has_text=f"box/lasso selection ({n})")).to_have_count(1)
    grid = page.locator('[data-testid="stDataFrame"] [role="grid"]').last
    expect(grid).to_have_attribute("aria-rowcount", str(n + 1))  # the header and n inputs

    page.get_by_role("button", name="Show all inputs").click()
    expect(every).to_be_visible(timeout=WAIT)
    wait_until_idle(page)
    expect(grid).to_have_attribute("aria-rowcount", str(N_INPUTS + 1))
    expect(chart.locator(".legendtext", has_text="box/lasso selection")).to_have_count(0)
    assert_no_exception(page)
