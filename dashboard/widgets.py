"""Page furniture every page shares: header, empty states, errors, progress bars, the run picker."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import streamlit as st

import core
from core.data.naming import display_name
from core.errors import LayerscopeError
from core.progress import Progress
from core.runs import is_untrained
from dashboard import cached, state

CSS = Path(__file__).resolve().parents[1] / "assets" / "style.css"
DEMO_RUN = ("minilm", "demo:sentences", "mean")  # the run pages open first when the workspace has it
WORKSPACE_PAGE = "views/workspace.py"
# px: wide enough for "minilm · demo:sentences · mean-pooled · 864 inputs" in the sidebar's select boxes
SIDEBAR_WIDTH = 440
PICKER_FITS = 50  # characters of a run label the sidebar's select box shows whole at SIDEBAR_WIDTH
POOLING_WORDS = {"mean": "mean-pooled", "max": "max-pooled", "first": "first token", "last": "last token",
                 "tokens": "per-token"}


def inject_css() -> None:
    if CSS.is_file():
        st.markdown(f"<style>{CSS.read_text()}</style>", unsafe_allow_html=True)


def page_header(title: str, subtitle: str) -> None:
    st.markdown(f"<div class='ls-title'>{title}</div><div class='ls-subtitle'>{subtitle}</div>", unsafe_allow_html=True)


def empty_state(message: str, *, page: str | None = None, label: str | None = None) -> None:
    """An info box saying what to do, with a link to the page where it is done."""
    st.info(message, icon=":material/info:")
    if page:
        st.page_link(page, label=label or "Open", icon=":material/arrow_forward:")


# ----- errors and progress ---------------------------------------------------------------------------
def show_error(error: Exception | str, *, about: str | None = None, hint: str | None = None) -> None:
    """A user's mistake as one st.error: "<about>: <what is wrong>. <hint>"."""
    message = f"{about}: {error}" if about else str(error)
    if hint:
        message = f"{message.rstrip('.')}. {hint}"
    st.error(message, icon=":material/error:")


@contextlib.contextmanager
def user_errors(*, about: str | None = None) -> Iterator[None]:
    """Show a LayerscopeError (a user's mistake) with show_error instead of a traceback."""
    try:
        yield
    except LayerscopeError as err:
        show_error(err, about=about)


class ProgressBar:
    """A st.progress bar as a `core.progress.Progress` callback.

    describe(done, total, what) words the bar's text (default: core's `what`).
    """

    def __init__(self, text: str, *, describe: Callable[[int, int, str], str] | None = None) -> None:
        self.describe = describe or (lambda done, total, what: what)
        self._slot = st.empty()
        self._bar = self._slot.progress(0.0, text=text)

    def __call__(self, done: int, total: int, what: str = "") -> None:
        self.step(0.0, 1.0)(done, total, what)

    def step(self, start: float, span: float, describe: Callable[[int, int, str], str] | None = None) -> Progress:
        """A callback filling the part [start, start + span] of the bar, for one step of several."""
        words = describe or self.describe

        def progress(done: int, total: int, what: str = "") -> None:
            self._bar.progress(min(1.0, start + span * done / max(total, 1)), text=words(done, total, what))

        return progress

    def finish(self, text: str) -> None:
        """Fill the bar and say so."""
        self._bar.progress(1.0, text=text)

    def empty(self) -> None:
        """Remove the bar (also after an error: no bar is left behind)."""
        self._slot.empty()


# ----- runs ------------------------------------------------------------------------------------------
def workspace_runs(*, empty: str = "No runs yet: extract activations first.") -> list[dict]:
    """The workspace's runs; stops the page with `empty` and a link to the Workspace when there is none."""
    runs = cached.list_runs()
    if not runs:
        empty_state(empty, page=WORKSPACE_PAGE, label="Go to Workspace")
        st.stop()
    return runs


def describe_run(run: Mapping[str, Any]) -> str:
    """One line telling a run apart: its name (if given) — model · dataset · pooling · inputs.

    Most telling first, so that where a narrow box cuts the end, what is left still differs.
    """
    what = (f"{run['model']['name']} · {display_name(run['dataset']['name'])} · "
            f"{POOLING_WORDS.get(run['pooling'], run['pooling'])} · {run['n_inputs']:,} inputs")
    name = run.get("name")
    return f"{name} — {what}" if name else what


def run_details(run: Mapping[str, Any], *, label: bool = True) -> str:
    """Everything that tells a run apart, for a caption that wraps instead of cutting: describe_run, layers, key."""
    details = f"{len(run['layers'])} layers · run {run['key'][:8]}"
    return f"{describe_run(run)} · {details}" if label else details


def _default_run(runs: list[dict]) -> str:
    """The demo run if present, else the newest run of a trained (not re-initialised) model."""
    for run in runs:
        if (run["model"]["name"], run["dataset"]["name"], run["pooling"]) == DEMO_RUN:
            return run["key"]
    trained = [r for r in runs if not is_untrained(r)]
    return (trained or runs)[0]["key"]


def run_picker(*, where: Callable[[dict], bool] | None = None, label: str = "Run") -> dict | None:
    """Sidebar select box over the workspace's runs (the current run first); returns the chosen run's metadata."""
    runs = [r for r in cached.list_runs() if where is None or where(r)]
    if not runs:
        return None
    keys = [r["key"] for r in runs]
    current = state.run_key()
    if current not in keys:
        current = _default_run(runs)
    by_key = {r["key"]: r for r in runs}
    chosen = st.sidebar.selectbox(
        label,
        keys,
        index=keys.index(current),
        format_func=lambda k: describe_run(by_key[k]),
        help="Runs are extractions stored in the workspace: name · model · dataset · pooling · inputs. "
        "Add one, or name one, on the Workspace page.",
    )
    # a label too long for the box (long names) is cut there: the caption repeats it whole
    st.sidebar.caption(run_details(by_key[chosen], label=len(describe_run(by_key[chosen])) > PICKER_FITS))
    state.set_run_key(chosen)
    return by_key[chosen]


def open_run_or_error(run: Mapping[str, Any]) -> core.Activations | None:
    """Activations for a run, or an error (e.g. its files were deleted) and None."""
    try:
        return cached.open_run(run["key"])
    except LayerscopeError as err:
        show_error(err, hint="Re-extract it on the Workspace page.")
        return None


def current_run(*, where: Callable[[dict], bool] | None = None,
                empty: str = "No runs yet: extract activations first.") -> core.Activations:
    """The sidebar's run (among those `where` accepts) as Activations.

    Stops the page with `empty` and a link to the Workspace when there is none, or
    with an error when the run cannot be opened.
    """
    run = run_picker(where=where)
    if run is None:
        empty_state(empty, page=WORKSPACE_PAGE, label="Go to Workspace")
        st.stop()
    acts = open_run_or_error(run)
    if acts is None:
        st.stop()
    return acts


def layer_label(layer: str, layers: list[str]) -> str:
    """A layer as the select boxes show it: "index · name"."""
    return f"{layers.index(layer)} · {layer}"
