"""End to end: `streamlit run` on 127.0.0.1, driven by headless Chromium (the system's)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PLOT = '[data-testid="stPlotlyChart"] .main-svg'


def assert_no_exception(page):
    boxes = page.query_selector_all('[data-testid="stException"]')
    assert not boxes, boxes[0].inner_text()[:2000]


@pytest.fixture(scope="module")
def server(demo_workspace, streamlit_server):
    return streamlit_server(demo_workspace.root)


def test_workspace_explorer_probes_in_the_browser(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{server}/workspace")
    page.wait_for_selector("text=New extraction", timeout=120_000)
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=120_000)
    page.screenshot(path=str(tmp_path / "workspace.png"), full_page=True)
    assert_no_exception(page)

    page.get_by_role("link", name="Layer explorer").click()
    page.wait_for_selector(PLOT, timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
    assert page.locator(".legendtext", has_text="finance").count() >= 1
    assert_no_exception(page)

    page.get_by_role("link", name="Probes").click()
    # wait for this page's own charts: the explorer's map can linger while the probes compute
    page.locator(".gtitle", has_text="probing topic").first.wait_for(timeout=240_000)
    page.locator(".gtitle", has_text="probing sentiment").first.wait_for(timeout=240_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(tmp_path / "probes.png"), full_page=True)
    assert page.locator(".gtitle", has_text="probing topic").count() == 1
    assert_no_exception(page)
    for name in ("workspace.png", "explorer.png", "probes.png"):
        assert (tmp_path / name).stat().st_size > 20_000
