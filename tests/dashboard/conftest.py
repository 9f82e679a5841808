"""A demo workspace for the dashboard tests: real minilm runs on real demo data."""

from __future__ import annotations

import pytest


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
