"""AppTest tests of the error bars: the Probes page's bootstrap interval and best-vs-last test, and the
Geometry page's bootstrap bands (behind its toggle and compute button)."""

from __future__ import annotations

from pathlib import Path

import pytest

streamlit = pytest.importorskip("streamlit")

from apptest_helpers import button, figures

import core
from core.store import Store
from dashboard import state

PAGES = ("probes.py", "geometry.py", "workspace.py", "explorer.py", "home.py")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, str, str]:
    """A workspace with minilm runs on demo sentences: mean-pooled (40 inputs) and per token (50 inputs)."""
    root = tmp_path_factory.mktemp("bootstrap_pages")
    store = Store(root)
    model = core.load_model("minilm", device="cpu")
    pooled = core.extract(model, core.load_dataset("demo:sentences", limit=40), pooling="mean", store=store)
    tokens = core.extract(model, core.load_dataset("demo:sentences", limit=50), pooling="tokens", store=store)
    return root, pooled.key, tokens.key


def _trace_names(at) -> list[str]:
    return [trace.get("name", "") for figure in figures(at) for trace in figure["data"]]


def test_probes__show_the_interval_band_and_best_vs_last_layer(page_app, workspace):
    root, pooled_key, _ = workspace
    at = page_app("probes.py", root, PAGES)
    at.session_state[state.RUN] = pooled_key
    at.run()
    assert not at.exception
    assert "95% bootstrap interval over inputs, 1000 resamples" in _trace_names(at)
    tests = [m.value for m in at.markdown if m.value.startswith("**Best layer vs last layer:**")]
    assert tests, [m.value for m in at.markdown]
    assert "the best layer is the last layer" in tests[0] or ("], p = " in tests[0] and " [" in tests[0])
    assert any("paired bootstrap over inputs" in c.value for c in at.caption)


def test_geometry__bootstrap_bands_are_computed_behind_the_button(page_app, workspace):
    root, _, tokens_key = workspace
    at = page_app("geometry.py", root, PAGES)
    at.session_state[state.RUN] = tokens_key
    at.run()
    assert not at.exception
    metrics = next(w for w in at.sidebar.multiselect if w.label == "Metrics")
    metrics.set_value(["intrinsic_dimension", "effective_rank"]).run()
    at.toggle(key=state.Geometry.BANDS).set_value(True).run()
    assert not at.exception
    assert not at.get("plotly_chart"), "the bands are computed behind the button"
    assert any("bootstrap bands (50 resamples)" in c.value for c in at.caption)
    button(at, "Compute geometry").click().run()
    assert not at.exception
    names = _trace_names(at)
    assert "minilm: 95% bootstrap interval over inputs, 50 resamples" in names, names
    assert any(n.startswith("minilm · TwoNN") and n.endswith(": 95% interval over 50 subsamples of 80% of inputs "
               "(without replacement)") for n in names), names

    at.run()  # stored: shown again without a click
    assert not at.exception and len(at.get("plotly_chart")) == 2
    at.toggle(key=state.Geometry.BANDS).set_value(False).run()
    assert not any("resamples" in n or "subsamples" in n for n in _trace_names(at))
