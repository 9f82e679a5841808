"""Shared fixtures: a session workspace and the real bundled models (no mocks)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one thread each
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    from core.store import Store

    return Store(tmp_path_factory.mktemp("workspace"))


@pytest.fixture()
def store(tmp_path):
    """An empty workspace for one test."""
    from core.store import Store

    return Store(tmp_path / "workspace")


@pytest.fixture(scope="session")
def minilm():
    import core

    return core.load_model("minilm", device="cpu")


@pytest.fixture(scope="session")
def smollm2(session_store):
    import core

    return core.load_model("smollm2", device="cpu", workspace=session_store.root)


@pytest.fixture(scope="session")
def sentences():
    import core

    return core.load_dataset("demo:sentences")


@pytest.fixture(scope="session")
def few_sentences():
    import core

    return core.load_dataset("demo:sentences", limit=40)


def runs_in(store) -> list[str]:
    """Names of everything under the store's runs folder (complete or partial)."""
    return sorted(p.name for p in store.runs_dir.iterdir()) if store.runs_dir.exists() else []


# ----- reliability: what each fault-injecting test tried and lost, for docs/reliability.md ---------------------------
@pytest.fixture()
def reliability(request):
    """reliability(what, tried, lost): record that this test injected `tried` faults of one kind (`what`, in words)
    and that `lost` of them lost or damaged something; `python tests/reliability_table.py` tabulates the records."""
    from reliability_table import record

    def note(what: str, tried: int, lost: int) -> None:
        record(request.node.nodeid, what, tried, lost)

    return note


def pytest_sessionfinish(session, exitstatus):
    """Rewrite docs/reliability.md's table when this run recorded anything (once, not in each xdist worker)."""
    if hasattr(session.config, "workerinput"):
        return
    from reliability_table import recorded_since, write_table

    if recorded_since(session.config._reliability_started):
        write_table()


def pytest_configure(config):
    import time

    config._reliability_started = time.time()
