"""End to end: click a chart's Export control in headless Chromium and check the downloaded files."""

from __future__ import annotations

import json
import re

import pytest

import core
from core import export

pytest.importorskip("playwright")
from browser_helpers import WAIT, assert_no_exception, wait_for_charts, wait_until_idle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, minilm):
    store = core.Store(tmp_path_factory.mktemp("export-e2e-ws"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), pooling="mean", store=store)
    return store


@pytest.fixture(scope="module")
def server(workspace, streamlit_server):
    return streamlit_server(workspace.root)


def test_export_control__downloads_a_png_and_its_sidecar(server, browser, workspace, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page.goto(f"{server}/probes")
    wait_for_charts(page, 2, timeout=WAIT)
    wait_until_idle(page)
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
    assert_no_exception(page)
