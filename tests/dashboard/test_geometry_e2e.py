"""End to end: the Geometry, Trajectory and Logit lens pages in headless Chromium (the system's)
against `streamlit run`, on a workspace holding one minilm run with pooling="tokens" (60 inputs).
"""

from __future__ import annotations

import pytest

pytest.importorskip("playwright")
from browser_helpers import PLOT, WAIT, assert_no_exception, chart_titles, wait_for_charts, wait_until_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tokens_workspace(tmp_path_factory, minilm):
    import core

    store = core.Store(tmp_path_factory.mktemp("geometry-ws"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), layers="all", pooling="tokens", store=store)
    return store


@pytest.fixture(scope="module")
def server(tokens_workspace, streamlit_server):
    return streamlit_server(tokens_workspace.root)


def test_geometry_trajectory_lens_in_the_browser(server, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})

    page.goto(f"{server}/geometry")
    button = page.get_by_role("button", name="Compute geometry")
    button.wait_for(timeout=WAIT)
    assert_no_exception(page)
    button.click()
    wait_for_charts(page, 2)  # curvature and intrinsic dimension, the default metrics
    wait_until_idle(page)
    titles = chart_titles(page)
    assert any(t.startswith("Trajectory curvature") for t in titles), titles
    assert any(t.startswith("Intrinsic dimension") for t in titles), titles
    expect(page.locator(".legendtext", has_text="minilm").first).to_be_visible()
    assert_no_exception(page)

    page.goto(f"{server}/trajectory")
    page.wait_for_selector(PLOT, timeout=WAIT)
    wait_for_charts(page, 2)
    wait_until_idle(page)
    titles = chart_titles(page)
    assert any(t.startswith("minilm · input 0 at ") for t in titles), titles
    assert "Curvature of input 0 by layer" in titles, titles
    expect(page.get_by_role("button", name="Add the mean over all inputs")).to_be_visible()
    assert_no_exception(page)

    page.goto(f"{server}/lens")  # opens on smollm2 (a causal LM), not on the run's encoder
    page.wait_for_selector("text=press Run the logit lens", timeout=WAIT)
    wait_until_idle(page)
    assert not page.locator('[data-testid="stAlertContentError"]').count()
    assert not page.locator(PLOT).count()  # nothing drawn before a click: smollm2 has no run here
    assert_no_exception(page)
