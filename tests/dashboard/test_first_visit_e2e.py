"""A first visit, end to end: a fresh workspace, the demo's light part, the server started by `make run`
(the Makefile's own recipe, with the port, the workspace and the test size given), the heavy part run to its
end in the background, and every page in headless Chromium (the system's).

LAYERSCOPE_DEMO_SIZE=test prepares the same runs, SAEs and results on 160 demo sentences with 60-step
SAEs, so that the whole test takes minutes on two cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from browser_helpers import CHART, PLOT, WAIT, assert_no_exception, chart_titles, wait_for_charts, wait_until_idle
from conftest import _free_port
from playwright.sync_api import expect

from core.demo_progress import read_progress

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOTE = '[class*="st-key-demo_progress_note"]'  # the demo's progress note (dashboard/demo_status.py)
ERROR_BOX = '[data-testid="stAlertContentError"]'
# the preparation announces its expected total (the progress note shows it; it follows the pace of the
# steps done so far); the heavy part must end within this many times the latest announcement
PACE_ALLOWANCE = 2
LONGEST = 3600  # seconds: a preparation that never ends fails the test here
# (url path, charts the page draws at least, a title one of them starts with)
PAGES = [
    ("", 0, None),
    ("workspace", 0, None),
    ("explorer", 1, "minilm"),
    ("probes", 2, None),
    ("interventions", 0, None),
    ("compare", 1, None),
    ("sae_train", 1, "Training"),
    ("sae_gallery", 2, "Feature map"),
    ("sae_match", 1, None),
    ("geometry", 2, None),
    ("trajectory", 2, "minilm · input 0"),
    ("lens", 2, None),
    ("export", 0, None),
]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False


def _wait(condition, timeout: float, what: str) -> None:
    """Poll `condition` twice a second until it holds, failing after `timeout` seconds with `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def first_visit(tmp_path_factory):
    """(url, workspace) of `make run` on a fresh workspace holding the light part of the demo."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    workspace = tmp_path_factory.mktemp("first-visit-ws")
    env = {**os.environ, "LAYERSCOPE_WORKSPACE": str(workspace), "LAYERSCOPE_DEMO_SIZE": "test",
           "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "core", "demo"], cwd=ROOT, env=env, check=True, timeout=900,
                   stdout=subprocess.DEVNULL)  # the light part, as `make demo` runs it
    port = _free_port()
    # `-o demo`: the light part is there (make would otherwise also check the virtual environment)
    server = subprocess.Popen(["make", "--no-print-directory", "-o", "demo", "run", f"PORT={port}", "HOST=127.0.0.1",
                               f"PY={sys.executable}"], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(f"{url}/_stcore/health"), 240, "the server did not answer")
        yield url, workspace
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # make, the server and the heavy part: one process group
        server.wait(timeout=30)
        progress = read_progress(workspace)
        if progress is not None and progress.alive() and progress.pid != os.getpid():
            os.kill(progress.pid, signal.SIGTERM)


def _check_page(page, url: str, path: str, charts: int, title: str | None) -> None:
    page.goto(f"{url}/{path}")
    page.wait_for_selector('[data-testid="stMainBlockContainer"]', timeout=WAIT)
    if charts:
        wait_for_charts(page, charts)
    wait_until_idle(page)
    assert_no_exception(page)
    errors = page.locator(ERROR_BOX).all_inner_texts()
    assert not errors, f"{path or 'home'}: {errors}"
    assert not page.locator(NOTE).count(), f"{path}: still waiting for the demo"
    if title:
        titles = chart_titles(page)
        assert any(t.startswith(title) for t in titles), (path, titles)
    assert page.locator(PLOT).count() >= charts


def test_first_visit__every_page_shows_real_results(first_visit, browser, tmp_path):
    url, workspace = first_visit
    _wait(lambda: read_progress(workspace) is not None, 120, "the heavy part did not start")
    page = browser.new_page(viewport={"width": 1500, "height": 1100})

    # the gallery waits for the demo SAE: a note says what is prepared, then the page fills in by itself
    page.goto(f"{url}/sae_gallery")
    page.wait_for_selector(f"{NOTE}, {CHART}", timeout=WAIT)
    assert_no_exception(page)
    waited = page.locator(NOTE).count() > 0
    if waited:
        note = page.locator(NOTE)
        expect(note).to_contain_text("Preparing the demo")
        expect(note).to_contain_text("fills in when it is ready")
        page.screenshot(path=str(tmp_path / "gallery-waiting.png"))

    def finished() -> bool:
        progress = read_progress(workspace)
        if progress.state in ("waiting", "running"):
            assert progress.elapsed() <= PACE_ALLOWANCE * progress.expected_total(), (
                f"{progress.elapsed():.0f} s spent, {progress.expected_total():.0f} s announced")
        return progress.state not in ("waiting", "running")

    _wait(finished, LONGEST, "the heavy part did not finish")
    progress = read_progress(workspace)
    assert progress.state == "done", [(s.name, s.state, s.error) for s in progress.steps]

    if waited:  # no reload: the note reran the page when the SAE was ready
        page.locator(NOTE).wait_for(state="detached", timeout=WAIT)
        wait_for_charts(page, 2)
        assert any(t.startswith("Feature map") for t in chart_titles(page)), chart_titles(page)

    for path, charts, title in PAGES:
        _check_page(page, url, path, charts, title)
    page.screenshot(path=str(tmp_path / "lens.png"))
