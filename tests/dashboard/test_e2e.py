"""End to end: `streamlit run` on 127.0.0.1, driven by headless Chromium (the system's)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")
from browser_helpers import PLOT, WAIT, assert_no_exception, chart_titles, wait_until_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(demo_workspace, streamlit_server):
    return streamlit_server(demo_workspace.root)


def test_workspace_explorer_probes_in_the_browser(server, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{server}/workspace")
    page.wait_for_selector("text=New extraction", timeout=WAIT)
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=WAIT)
    wait_until_idle(page)
    assert_no_exception(page)
    # the first bundled model and dataset, previewed before any extraction
    expect(page.get_by_text(re.compile(r"^864 rows · text"))).to_be_visible()
    expect(page.get_by_role("button", name="Extract activations")).to_be_enabled()

    page.get_by_role("link", name="Layer explorer").click()
    page.wait_for_selector(PLOT, timeout=WAIT)
    expect(page.locator(".legendtext", has_text="finance").first).to_be_visible(timeout=WAIT)
    wait_until_idle(page)
    assert page.locator(".legendtext", has_text="finance").count() >= 1
    assert any(title.startswith("minilm · embeddings · PC map of demo:sentences") for title in chart_titles(page))
    assert_no_exception(page)

    page.get_by_role("link", name="Probes").click()
    # wait for this page's own charts: the explorer's map can linger while the probes compute
    page.locator(".gtitle", has_text="probing topic").first.wait_for(timeout=240_000)
    page.locator(".gtitle", has_text="probing sentiment").first.wait_for(timeout=240_000)
    wait_until_idle(page)
    assert page.locator(".gtitle", has_text="probing topic").count() == 1
    assert len(chart_titles(page)) == 2  # the explorer's map is gone
    expect(page.get_by_text("Best layer").first).to_be_visible()
    assert_no_exception(page)
