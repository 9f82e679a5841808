"""Soak: five browser sessions on one dashboard server for N minutes while one of them extracts.

Session 0 starts an extraction from the Workspace page (digits-mlp's untrained twin on demo:digits, batch
size 1, started again under another batch size whenever one ends); sessions 1-4 rerun the Layer explorer
(a new highlight each time) as fast as the server answers. Prints the errors (target 0), the 95th-percentile
rerun time and the server's peak memory (children included), then `result:` lines.

    python bench/soak.py --minutes 2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
from browser_helpers import assert_no_exception, wait_until_idle

from bench.results import result

HANG_MS = 60_000  # a rerun slower than this counts as an error
P95_TARGET = 5.0  # seconds
COUNT_RUNS = """() => { window.__runsEnded = 0; const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(rs => { for (const r of rs) if (r.oldValue !== 'notRunning'
    && app.getAttribute('data-test-script-state') === 'notRunning') window.__runsEnded += 1; })
  .observe(app, {attributes: true, attributeFilter: ['data-test-script-state'], attributeOldValue: true}); }"""


def _workspace() -> Path:
    import core

    store = core.Store(Path(tempfile.mkdtemp(prefix="soak-ws-")))
    model = core.load_model("digits-mlp", device="cpu", workspace=store.root)
    core.extract(model, core.load_dataset("demo:digits"), pooling="mean", store=store)
    return store.root


def _server(workspace: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAYERSCOPE_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address",
                             "127.0.0.1", "--server.port", str(port), "--server.headless", "true"], cwd=ROOT,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not start within 5 minutes")


class PeakMemory(threading.Thread):
    """Samples the resident memory of a process and its children (summed) every half second; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                continue


def _open(context, url: str, path: str):
    page = context.new_page()
    page.goto(f"{url}/{path}")
    page.wait_for_selector('[data-testid="stMainBlockContainer"]', timeout=HANG_MS * 3)
    wait_until_idle(page, timeout=HANG_MS * 3)
    page.evaluate(COUNT_RUNS)
    return page


def _pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).and_(page.locator("input")).click()
    page.get_by_role("option").filter(has_text=option).first.click()
    wait_until_idle(page, timeout=HANG_MS)


def _extract(page, batch: int) -> None:
    """Start digits-mlp's untrained twin on demo:digits with `batch` from a Workspace page."""
    box = page.get_by_label("Batch size", exact=True)
    box.fill(str(batch))
    box.press("Enter")
    wait_until_idle(page, timeout=HANG_MS)
    page.get_by_role("button", name="Extract activations").click()


def _rerun(page, text: str) -> float:
    ended = page.evaluate("window.__runsEnded")
    start = time.monotonic()
    box = page.get_by_label("Highlight inputs containing", exact=True)
    box.fill(text)
    box.press("Enter")
    page.wait_for_function(f"window.__runsEnded > {ended}", timeout=HANG_MS)
    wait_until_idle(page, timeout=HANG_MS)
    assert_no_exception(page)
    return time.monotonic() - start


def soak(minutes: float, sessions: int) -> None:
    from playwright.sync_api import sync_playwright

    workspace = _workspace()
    proc, url = _server(workspace)
    memory = PeakMemory(proc.pid)
    memory.start()
    times: list[float] = []
    errors: list[str] = []
    extractions = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                        args=["--no-sandbox", "--disable-gpu"])
            extractor = _open(browser.new_context(), url, "workspace")
            _pick(extractor, "Model", "digits-mlp:")
            _pick(extractor, "Dataset", "demo:digits:")
            extractor.get_by_text("Untrained twin", exact=False).click()
            wait_until_idle(extractor, timeout=HANG_MS)
            _extract(extractor, 1)
            extractions += 1
            others = [_open(browser.new_context(), url, "explorer") for _ in range(sessions - 1)]
            end = time.monotonic() + minutes * 60
            i = 0
            while time.monotonic() < end:
                for page in others:
                    try:
                        times.append(_rerun(page, str(i)))
                    except Exception as err:  # noqa: BLE001 - counted and reported, the soak goes on
                        errors.append(f"{type(err).__name__}: {str(err)[:200]}")
                i += 1
                if extractor.get_by_text(re.compile(r"^Stored run ")).count():  # keep a job running: next batch size
                    _extract(extractor, 1 + extractions)
                    extractions += 1
            assert_no_exception(extractor)
            browser.close()
    finally:
        memory.done.set()
        memory.join()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(workspace, ignore_errors=True)
    p95 = float(np.percentile(times, 95)) if times else float("inf")
    for error in errors[:10]:
        print("error:", error)
    print(f"{sessions} sessions, {minutes:g} min, {len(times)} reruns, {extractions} extractions started")
    result("errors", str(len(errors)), "0", not errors)
    result("95th-percentile rerun time", f"{p95:.2f} s", f"<= {P95_TARGET:g} s", p95 <= P95_TARGET)
    result("peak server memory (children included)", f"{memory.peak / 2**20:.0f} MiB", "reported", True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the sessions rerun (default 10)")
    parser.add_argument("--sessions", type=int, default=5, help="browser sessions, one extracting (default 5)")
    args = parser.parse_args()
    if not args.minutes > 0 or args.sessions < 2:
        parser.error(f"--minutes={args.minutes} must be > 0 and --sessions={args.sessions} at least 2")
    soak(args.minutes, args.sessions)


if __name__ == "__main__":
    main()
