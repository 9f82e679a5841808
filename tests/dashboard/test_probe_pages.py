"""AppTest tests of the Probes page's control: the control task for runs of single words, shuffled labels otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

streamlit = pytest.importorskip("streamlit")

import pandas as pd
from apptest_helpers import figures

import core
from core.store import Store
from dashboard import state

PAGES = ("probes.py", "workspace.py", "explorer.py", "home.py")


@pytest.fixture(scope="module")
def probe_workspace(tmp_path_factory) -> tuple[Path, str, str]:
    """A workspace with a minilm tokens run on repeated words and a mean-pooled run on sentences: (root, keys)."""
    root = tmp_path_factory.mktemp("probe_pages")
    store = Store(root)
    words = core.load_dataset("demo:words", limit=30).table
    csv = root / "words.csv"
    pd.concat([words[["text", "polarity"]]] * 3, ignore_index=True).to_csv(csv, index=False)  # each word 3 times
    model = core.load_model("minilm", device="cpu")
    words_run = core.extract(model, core.load_dataset(csv), pooling="tokens", store=store)
    sentences_run = core.extract(model, core.load_dataset("demo:sentences", limit=40), pooling="mean", store=store)
    return root, words_run.key, sentences_run.key


def _legend(at) -> list[str]:
    return [trace.get("name", "") for trace in figures(at)[0]["data"]]


def test_probes__word_run_offers_the_control_task_by_default(page_app, probe_workspace):
    root, words_key, _ = probe_workspace
    at = page_app("probes.py", root, PAGES)
    at.session_state[state.RUN] = words_key
    at.run()
    assert not at.exception
    control = at.radio(key=state.Probes.CONTROL)
    assert control.value == "task" and list(control.options) == ["Control task (one label per word)", "Shuffled labels"]
    assert "control task (one label per word type)" in _legend(at)
    control.set_value("shuffled").run()
    assert not at.exception
    assert "control (shuffled labels)" in _legend(at)


def test_probes__sentence_run_says_why_the_control_task_is_not_offered(page_app, probe_workspace):
    root, _, sentences_key = probe_workspace
    at = page_app("probes.py", root, PAGES)
    at.session_state[state.RUN] = sentences_key
    at.run()
    assert not at.exception
    assert not [r for r in at.radio if r.key == state.Probes.CONTROL]
    assert any("needs inputs that are single words" in c.value and "not single words" in c.value for c in at.caption)
    assert "control (shuffled labels)" in _legend(at)
