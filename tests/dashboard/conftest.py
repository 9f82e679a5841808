"""A demo workspace for the dashboard tests: real minilm runs on real demo data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory, minilm):
    import core

    store = core.Store(tmp_path_factory.mktemp("dashboard-ws"))
    sentences = core.load_dataset("demo:sentences")
    core.extract(minilm, sentences, layers="all", pooling="mean", store=store)
    return store


@pytest.fixture()
def workspace_env(demo_workspace, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_WORKSPACE", str(demo_workspace.root))
    return demo_workspace


@pytest.fixture()
def empty_workspace_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_WORKSPACE", str(tmp_path / "empty"))
    return tmp_path / "empty"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def streamlit_server():
    """Start `streamlit run dashboard/app.py` on 127.0.0.1 for a workspace; returns its URL.

    Servers started by a test module stop when the module ends.
    """
    started = []

    def start(workspace, **env) -> str:
        port = _free_port()
        full_env = {**os.environ, "LAYERSCOPE_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1", **env}
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                return url
            except OSError:
                time.sleep(0.5)
        pytest.fail("streamlit did not start within 2 minutes")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from the system (Debian's package), driven by playwright; no browser download."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on this machine (make setup installs Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()
