"""Small workspaces with runs of each bundled model kind, and pages run on them with AppTest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import core
from core.store import Store

ROOT = Path(__file__).resolve().parents[3]
VIEWS = ROOT / "dashboard" / "views"
APPTEST_TIMEOUT = 240  # seconds per script run: the first run imports torch and transformers
sys.path.insert(0, str(ROOT / "tests" / "dashboard"))  # apptest_helpers: reading what a page drew

from recipe_workspaces import Runs, share_models, with_saes  # noqa: E402


@pytest.fixture(scope="session")
def minilm_runs(tmp_path_factory, minilm) -> Runs:
    """minilm on 40 demo sentences: mean pooling, its untrained twin, and pooling='tokens'."""
    store = Store(tmp_path_factory.mktemp("recipes-minilm"))
    data = core.load_dataset("demo:sentences", limit=40)
    twin = core.load_model("minilm", device="cpu", reinit=True, seed=0)
    return Runs(store, core.extract(minilm, data, pooling="mean", store=store).key,
                core.extract(twin, data, pooling="mean", store=store).key,
                core.extract(minilm, data, pooling="tokens", store=store).key)


@pytest.fixture(scope="session")
def minilm_sae_runs(minilm_runs) -> Runs:
    """minilm_runs with two tiny SAEs (seeds 0 and 1) on its tokens run, statistics and matching stored."""
    return with_saes(minilm_runs, seeds=(0, 1))


@pytest.fixture(scope="session")
def smollm2_sae_runs(smollm2_runs) -> Runs:
    """smollm2_runs with a tiny SAE on its tokens run (logit effects need a causal LM), statistics stored."""
    return with_saes(smollm2_runs, seeds=(0,))


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory, session_store) -> Runs:
    """digits-mlp trained with seeds 0 and 1, on 150 bundled digits."""
    store = Store(tmp_path_factory.mktemp("recipes-digits"))
    share_models(store, session_store)
    data = core.load_dataset("demo:digits", limit=150)
    keys = [core.extract(core.load_model(name, device="cpu", workspace=store.root), data, store=store).key
            for name in ("digits-mlp", "digits-mlp:seed=1")]
    return Runs(store, *keys)


@pytest.fixture(scope="session")
def smollm2_runs(tmp_path_factory, session_store, smollm2, minilm) -> Runs:
    """smollm2 on 24 demo sentences (mean and tokens), with minilm on the same sentences as its partner."""
    store = Store(tmp_path_factory.mktemp("recipes-smollm2"))
    share_models(store, session_store)
    data = core.load_dataset("demo:sentences", limit=24)
    return Runs(store, core.extract(smollm2, data, pooling="mean", store=store).key,
                core.extract(minilm, data, pooling="mean", store=store).key,
                core.extract(smollm2, data, pooling="tokens", store=store).key)


@pytest.fixture(scope="session")
def efficientnet_runs(tmp_path_factory, session_store) -> Runs:
    """efficientnet-lite0 on 60 bundled digits, with digits-mlp on the same images as its partner."""
    store = Store(tmp_path_factory.mktemp("recipes-efficientnet"))
    share_models(store, session_store)
    data = core.load_dataset("demo:digits", limit=60)
    cnn = core.load_model("efficientnet-lite0", device="cpu", workspace=store.root)
    mlp = core.load_model("digits-mlp", device="cpu", workspace=store.root)
    return Runs(store, core.extract(cnn, data, store=store).key, core.extract(mlp, data, store=store).key)


def _entry_point(folder: Path, page: str) -> Path:
    """An app entry registering every page (their st.page_link targets must exist), `page` the default."""
    (folder / "views").symlink_to(VIEWS, target_is_directory=True)
    pages = sorted(p.name for p in VIEWS.glob("*.py") if p.name != "__init__.py")
    listed = ",\n".join(
        f"    st.Page(VIEWS / {name!r}, title={name[:-3]!r}{', default=True' if name == page else ''})"
        for name in pages
    )
    script = folder / "app.py"
    script.write_text(f"from pathlib import Path\nimport streamlit as st\nVIEWS = Path({str(VIEWS)!r})\n"
                      f"st.navigation([\n{listed},\n]).run()\n")
    return script


@pytest.fixture()
def open_page(tmp_path, monkeypatch):
    """open_page(page, runs, **session_state) -> an AppTest of dashboard/views/`page` on the runs' workspace, run once.

    Streamlit's caches are cleared around each test (runs and results are cached per process).
    """
    import streamlit
    from streamlit.testing.v1 import AppTest

    from core.store import WORKSPACE_ENV

    def make(page: str, runs: Runs, **session_state):
        monkeypatch.setenv(WORKSPACE_ENV, str(runs.store.root))
        folder = tmp_path / f"entry_{page[:-3]}_{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        at = AppTest.from_file(str(_entry_point(folder, page)), default_timeout=APPTEST_TIMEOUT)
        for name, value in session_state.items():
            at.session_state[name] = value
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    streamlit.cache_data.clear()
    streamlit.cache_resource.clear()
    yield make
    streamlit.cache_data.clear()
    streamlit.cache_resource.clear()
