"""End to end: click a chart's Export control in headless Chromium and check the downloaded files."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import core
from core import export

pytestmark = pytest.mark.slow

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PLOT = '[data-testid="stPlotlyChart"] .main-svg'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, minilm):
    store = core.Store(tmp_path_factory.mktemp("export-e2e-ws"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), pooling="mean", store=store)
    return store


@pytest.fixture(scope="module")
def server(workspace):
    port = free_port()
    env = {**os.environ, "LAYERSCOPE_WORKSPACE": str(workspace.root), "HF_HUB_OFFLINE": "1"}
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
    path = export.browser_path()
    if path is None:
        pytest.skip("no chromium on this machine (make setup installs Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=ARGS)
        yield b
        b.close()


def test_export_control__downloads_a_png_and_its_sidecar(server, browser, workspace, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page.goto(f"{server}/probes")
    page.wait_for_function(f"document.querySelectorAll('{PLOT}').length >= 2", timeout=180_000)
    page.locator('[data-testid="stPopover"] button').first.click()
    download_png = page.get_by_role("button", name=re.compile("Download PNG"))
    download_png.wait_for(timeout=30_000)
    with page.expect_download(timeout=120_000) as info:
        download_png.click()
    png = info.value
    assert png.suggested_filename == "probe-minilm-topic.png"
    png.save_as(tmp_path / png.suggested_filename)
    data = (tmp_path / png.suggested_filename).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name=re.compile("Sidecar")).first.click()
    info.value.save_as(tmp_path / "sidecar.json")
    sidecar = json.loads((tmp_path / "sidecar.json").read_text())
    assert sidecar["kind"] == "layerscope.figure" and sidecar["spec"]["figure"] == "probe_curve"
    assert sidecar["spec"]["params"]["column"] == "topic" and sidecar["runs"][0]["model"]["name"] == "minilm"
    saved = workspace.root / "exports" / "figures"
    assert (saved / "probe-minilm-topic.png").read_bytes() == data  # the download left its sidecar in the workspace
    assert export.read_sidecar(saved / "probe-minilm-topic.json")["files"]["png"]["bytes"] == len(data)
    assert not page.query_selector_all('[data-testid="stException"]')
    page.screenshot(path=str(tmp_path / "export-popover.png"))
