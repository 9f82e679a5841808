"""End to end: the Geometry, Trajectory and Logit lens pages in headless Chromium (the system's)
against `streamlit run`, on a workspace holding one minilm run with pooling="tokens" (60 inputs).
"""

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
TIMEOUT = 180_000  # ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tokens_workspace(tmp_path_factory, minilm):
    import core

    store = core.Store(tmp_path_factory.mktemp("geometry-ws"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), layers="all", pooling="tokens", store=store)
    return store


@pytest.fixture(scope="module")
def server(tokens_workspace):
    port = free_port()
    env = {**os.environ, "LAYERSCOPE_WORKSPACE": str(tokens_workspace.root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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


def wait_idle(page, ms: int = 1500):
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT)
    page.wait_for_timeout(ms)


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
