"""A demo workspace for the dashboard tests: real minilm runs on real demo data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "recipes"))  # recipe_checks: page vs recipe

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


VIEWS = Path(__file__).resolve().parents[2] / "dashboard" / "views"
APPTEST_TIMEOUT = 240  # seconds per script run: the first run imports torch and transformers


def _entry_point(folder: Path, page: str, pages: tuple[str, ...]) -> Path:
    """An app entry like dashboard/app.py registering `pages` (files in dashboard/views), `page` the default.

    The pages' st.page_link("views/...") calls need their targets registered, which a page run
    on its own does not have (AppTest.from_file on the page alone fails with
    StreamlitPageNotFoundError in its empty states); app.py itself is not used because it starts
    the UMAP warm-up (a minute of numba).
    """
    (folder / "views").symlink_to(VIEWS, target_is_directory=True)
    listed = ",\n".join(
        f"    st.Page(VIEWS / {name!r}, title={name[:-3]!r}{', default=True' if name == page else ''})"
        for name in pages
    )
    script = folder / "app.py"
    script.write_text(
        "from pathlib import Path\nimport streamlit as st\n"
        f"VIEWS = Path({str(VIEWS)!r})\n"
        f"st.navigation([\n{listed},\n]).run()\n"
    )
    return script


@pytest.fixture()
def page_app(tmp_path, monkeypatch):
    """page_app(page, workspace, pages) -> AppTest of `page` (under an entry registering `pages`)
    with LAYERSCOPE_WORKSPACE pointing at `workspace`; streamlit's caches are cleared around each test."""
    import streamlit
    from streamlit.testing.v1 import AppTest

    from core.store import WORKSPACE_ENV

    def make(page: str, workspace: Path, pages: tuple[str, ...]) -> AppTest:
        monkeypatch.setenv(WORKSPACE_ENV, str(workspace))
        folder = tmp_path / f"entry_{page[:-3]}"
        folder.mkdir()
        return AppTest.from_file(str(_entry_point(folder, page, pages)), default_timeout=APPTEST_TIMEOUT)

    streamlit.cache_data.clear()  # list_runs and results are cached per process, across tests
    streamlit.cache_resource.clear()
    yield make
    streamlit.cache_data.clear()
    streamlit.cache_resource.clear()


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
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # the shutdown tests assert the 2 s bound; here only the test's own claim counts
            proc.kill()
            proc.wait()
            warnings.warn(f"streamlit server {proc.pid} was still running 20 s after SIGTERM; killed", stacklevel=1)


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
