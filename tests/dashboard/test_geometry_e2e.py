"""End to end: the Geometry, Trajectory and Logit lens pages in headless Chromium (the system's)
against `streamlit run`, on a workspace holding one minilm run with pooling="tokens" (60 inputs).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PLOT = '[data-testid="stPlotlyChart"] .main-svg'
TIMEOUT = 180_000  # ms


@pytest.fixture(scope="module")
def tokens_workspace(tmp_path_factory, minilm):
    import core

    store = core.Store(tmp_path_factory.mktemp("geometry-ws"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), layers="all", pooling="tokens", store=store)
    return store


def assert_no_exception(page):
    boxes = page.query_selector_all('[data-testid="stException"]')
    assert not boxes, boxes[0].inner_text()[:2000]


def wait_idle(page, ms: int = 1500):
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT)
    page.wait_for_timeout(ms)


@pytest.fixture(scope="module")
def server(tokens_workspace, streamlit_server):
    return streamlit_server(tokens_workspace.root)


def test_geometry_trajectory_lens_in_the_browser(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})

    page.goto(f"{server}/geometry")
    button = page.get_by_role("button", name="Compute geometry")
    button.wait_for(timeout=TIMEOUT)
    assert_no_exception(page)
    button.click()
    page.wait_for_selector(PLOT, timeout=TIMEOUT)
    wait_idle(page)
    page.screenshot(path=str(tmp_path / "geometry.png"), full_page=True)
    assert_no_exception(page)

    page.goto(f"{server}/trajectory")
    page.wait_for_selector(PLOT, timeout=TIMEOUT)
    page.wait_for_function(f"document.querySelectorAll('{PLOT}').length >= 2", timeout=TIMEOUT)
    wait_idle(page)
    page.screenshot(path=str(tmp_path / "trajectory.png"), full_page=True)
    assert_no_exception(page)

    page.goto(f"{server}/lens")
    page.wait_for_selector("text=not a causal language model", timeout=TIMEOUT)
    wait_idle(page)
    page.screenshot(path=str(tmp_path / "lens.png"), full_page=True)
    assert_no_exception(page)
    for name in ("geometry.png", "trajectory.png", "lens.png"):
        assert (tmp_path / name).stat().st_size > 20_000
