"""Shared page furniture: header, empty states, run picker, error display."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import streamlit as st

from core.errors import LayerscopeError
from dashboard import services

CSS = Path(__file__).resolve().parents[1] / "assets" / "style.css"

# session-state keys (the only ones pages share)
RUN_KEY = "run_key"  # key of the run the pages show
LAYER_KEY = "explorer_layer"  # layer the explorer shows (probes page can set it)

DEMO_RUN = ("minilm", "demo:sentences", "mean")


def inject_css() -> None:
    if CSS.is_file():
        st.markdown(f"<style>{CSS.read_text()}</style>", unsafe_allow_html=True)


def page_header(title: str, subtitle: str) -> None:
    st.markdown(f"<div class='ls-title'>{title}</div><div class='ls-subtitle'>{subtitle}</div>", unsafe_allow_html=True)


def empty_state(message: str, *, page: str | None = None, label: str | None = None) -> None:
    st.info(message, icon=":material/info:")
    if page:
        st.page_link(page, label=label or "Open", icon=":material/arrow_forward:")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a LayerscopeError (a user's mistake) as st.error instead of a traceback."""
    try:
        yield
    except LayerscopeError as err:
        st.error(str(err), icon=":material/error:")


def _default_run(runs: list[dict]) -> str:
    """The demo run if present, else the newest run of a trained (not re-initialised) model."""
    for run in runs:
        if (run["model"]["name"], run["dataset"]["name"], run["pooling"]) == DEMO_RUN:
            return run["key"]
    trained = [r for r in runs if not str(r["model"].get("weights", "")).startswith("reinit")]
    return (trained or runs)[0]["key"]


def run_picker(*, where: Callable[[dict], bool] | None = None, label: str = "Run") -> dict | None:
    """Sidebar select box over the workspace's runs; returns the chosen run's metadata."""
    runs = [r for r in services.list_runs() if where is None or where(r)]
    if not runs:
        return None
    keys = [r["key"] for r in runs]
    current = st.session_state.get(RUN_KEY)
    if current not in keys:
        current = _default_run(runs)
    by_key = {r["key"]: r for r in runs}
    chosen = st.sidebar.selectbox(
        label,
        keys,
        index=keys.index(current),
        format_func=lambda k: services.describe_run(by_key[k]),
        help="Runs are extractions stored in the workspace; add one on the Workspace page.",
    )
    st.session_state[RUN_KEY] = chosen
    return by_key[chosen]


def open_run_or_error(run: dict):
    """Activations for a run, or st.error (e.g. its files were deleted) and None."""
    try:
        return services.open_run(run["key"])
    except LayerscopeError as err:
        st.error(f"{err}. Re-extract it on the Workspace page.", icon=":material/error:")
        return None


def current_run(*, where: Callable[[dict], bool] | None = None,
                empty: str = "No runs yet: extract activations first."):
    """The sidebar's run (among those `where` accepts) as Activations.

    Stops the page with `empty` and a link to the Workspace when there is none, or
    with an st.error when the run cannot be opened.
    """
    run = run_picker(where=where)
    if run is None:
        empty_state(empty, page="views/workspace.py", label="Go to Workspace")
        st.stop()
    acts = open_run_or_error(run)
    if acts is None:
        st.stop()
    return acts


def layer_label(layer: str, layers: list[str]) -> str:
    return f"{layers.index(layer)} · {layer}"
