"""Reading a page in headless Chromium: wait on conditions (the script run ended, a chart is drawn), never sleep."""

from __future__ import annotations

from playwright.sync_api import Page, expect

CHART = '[data-testid="stPlotlyChart"]'
PLOT = f"{CHART} .main-svg"  # a chart plotly has drawn
WAIT = 180_000  # ms: the first script run imports torch and transformers


def wait_until_idle(page: Page, timeout: int = WAIT) -> None:
    """The script run ended and nothing on the page is left over from the run before (stale)."""
    expect(page.locator('[data-testid="stApp"]')).to_have_attribute("data-test-script-state", "notRunning",
                                                                   timeout=timeout)
    expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=timeout)


def wait_for_charts(page: Page, n: int, timeout: int = WAIT) -> None:
    """At least `n` charts are drawn."""
    page.wait_for_function(f"document.querySelectorAll('{PLOT}').length >= {n}", timeout=timeout)


def chart_titles(page: Page) -> list[str]:
    """The titles of the charts on the page, top to bottom."""
    return page.locator(f"{CHART} .gtitle").all_text_contents()


def assert_no_exception(page: Page) -> None:
    boxes = page.query_selector_all('[data-testid="stException"]')
    assert not boxes, boxes[0].inner_text()[:2000]
