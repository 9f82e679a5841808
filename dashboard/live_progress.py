"""Long work on a page: what it is doing, how far it is, the time spent, and a Cancel button.

A `LiveProgress` is a `core.progress.Progress` callback. Once a button is clicked, Streamlit
stops the running script at its next page update, so a click on Cancel stops the work at its
next progress call (between layer pairs, batches or fits). Results written through the store
are saved only when complete, so stopped work leaves nothing half-stored. The click is
remembered for that request (`stopped`), so the rerun it causes does not start the work again
until the user asks for it.

The time spent moves on its own: a clock thread redraws the bar every `TICK` seconds while the
work runs, also through a long step that reports nothing (one block of layer pairs, a batch of
probe fits). It carries the page's script-run context (Streamlit's documented way to draw from
another thread), never raises into the work, and is stopped and joined before the bar goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

TICK = 1.0  # seconds between redraws of the time spent while the work reports nothing

Describe = Callable[[int, int, str], str]  # (done, total, what core said) -> how far, in words


def _plain(done: int, total: int, what: str) -> str:
    return f"{what} ({done} of {total})" if what else f"{done} of {total}"


def elapsed_words(seconds: float) -> str:
    """Time spent as "4.2 s" or "2 min 05 s"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class LiveProgress:
    """A progress bar that names the step, how far it is and the time spent, with a Cancel button.

    request: what is being computed (hashable); a Cancel click records it under session-state
    `key` so that `stopped(key, request)` holds on the following runs. With `eager` the bar is
    drawn at once, saying `starting` until the work reports; otherwise only when the work reports
    a step still to do, so that a result read back from the workspace in an instant draws nothing.
    """

    def __init__(self, title: str, *, key: str, request: Hashable, describe: Describe | None = None,
                 eager: bool = False, starting: str = "starting") -> None:
        self.title = title
        self.key = key
        self.request = request
        self.describe = describe or _plain
        self.start = time.monotonic()
        self.last: dict[str, Any] = {"done": 0, "total": 0, "words": starting}  # how far, in words
        self._slot = st.empty()
        self._bar: Any = None
        self._fraction = 0.0
        self._lock = threading.Lock()  # the page's thread and the clock draw the same bar
        self._finished = threading.Event()
        self._clock: threading.Thread | None = None
        if eager:
            self._draw(0.0)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _cancel(self) -> None:
        """The Cancel button's callback: remember how far the request got, so that it is not restarted."""
        st.session_state[self.key] = {"request": self.request, "elapsed": self.elapsed, **self.last}

    def _text(self) -> str:
        return f"{self.title}: {self.last['words']} · {elapsed_words(self.elapsed)}"

    def _draw(self, fraction: float) -> None:
        with self._lock:
            self._fraction = fraction
            if self._bar is None:
                with self._slot.container(border=True):
                    self._bar = st.progress(fraction, text=self._text())
                    st.button("Cancel", key=f"{self.key}_cancel", icon=":material/stop_circle:",
                              on_click=self._cancel, help="Stop after the current step; nothing partial is stored.")
                self._start_clock()
            else:
                self._bar.progress(fraction, text=self._text())

    def _start_clock(self) -> None:
        ctx = get_script_run_ctx(suppress_warning=True)
        if ctx is None:  # no page to draw on (bare mode)
            return
        self._clock = threading.Thread(target=self._tick, name="live-progress-clock", daemon=True)
        add_script_run_ctx(self._clock, ctx)
        self._clock.start()

    def _tick(self) -> None:
        while not self._finished.wait(TICK):
            try:
                with self._lock:
                    if not self._finished.is_set():
                        self._bar.progress(self._fraction, text=self._text())
            except Exception:  # the page went on (a rerun, a closed tab): the clock just stops  # noqa: BLE001
                return

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if self._bar is None and total and done >= total:
            return  # finished in one go (read back from the workspace): nothing to show
        self.last = {"done": int(done), "total": int(total), "words": self.describe(done, total, what)}
        self._draw(min(1.0, done / total) if total else 0.0)

    def empty(self) -> None:
        """Stop the clock and remove the bar and its button (also after an error: nothing is left behind)."""
        self._finished.set()
        if self._clock is not None:
            self._clock.join(timeout=5 * TICK)
        self._slot.empty()


def is_stopped(key: str, request: Hashable) -> bool:
    """Whether a Cancel click stopped `request` (and it was not asked for again since)."""
    record = st.session_state.get(key)
    return bool(record) and record.get("request") == request


def stopped(key: str, request: Hashable, *, what: str, retry: str | None = None,
            kept: str = "Nothing partial was stored.") -> bool:
    """True while `request` stays cancelled: says how far it got (and `kept`) and offers `retry` (a button label).

    A click on `retry` forgets the cancellation and returns False, so the caller starts the work again.
    """
    if not is_stopped(key, request):
        return False
    record = st.session_state[key]
    st.info(f"{what} was stopped after {elapsed_words(record['elapsed'])} ({record['words']}). {kept}",
            icon=":material/stop_circle:")
    if retry is not None and st.button(retry, key=f"{key}_retry", icon=":material/play_arrow:"):
        st.session_state.pop(key, None)
        return False
    return True
