"""End to end: `streamlit run` on 127.0.0.1, driven by headless Chromium (the system's)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PLOT = '[data-testid="stPlotlyChart"] .main-svg'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_workspace):
    port = free_port()
    env = {**os.environ, "LAYERSCOPE_WORKSPACE": str(demo_workspace.root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (make setup installs Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def assert_no_exception(page):
    boxes = page.query_selector_all('[data-testid="stException"]')
    assert not boxes, boxes[0].inner_text()[:2000]


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
    page.wait_for_selector(PLOT, timeout=120_000)
    page.wait_for_function(f"document.querySelectorAll('{PLOT}').length >= 2", timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(tmp_path / "probes.png"), full_page=True)
    assert page.locator(".gtitle", has_text="probing topic").count() == 1
    assert_no_exception(page)
    for name in ("workspace.png", "explorer.png", "probes.png"):
        assert (tmp_path / name).stat().st_size > 20_000
