"""The demo's background preparation on a page: a live note while the page waits for it, its failure if it failed.

`make run` starts the demo's heavy part (core.demo_background) once the server answers; it writes its
progress to the workspace (core.demo_progress). A page that needs one of its steps calls
`waiting_for(steps, what)`: while the preparation still works on them, a note says what is being
prepared, how far it is and the time spent of the time expected, updates itself every few seconds and
reruns the page when they are done. A step that failed is shown as an error, with what to do.
"""

from __future__ import annotations

from collections.abc import Collection

import streamlit as st

from core.demo_progress import DemoProgress, read_progress
from dashboard import cached, cached_sae

REFRESH_S = 2  # seconds between two readings of the progress file
RETRY = "Run `python -m core demo --heavy` to prepare what is missing (what is done is kept)"


def progress() -> DemoProgress | None:
    """The workspace's demo preparation, if one was started."""
    return read_progress(cached.store().root)


def duration(seconds: float) -> str:
    """Seconds as "42 s" or "3 min 05 s"."""
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def waiting_for(steps: Collection[str], what: str) -> bool:
    """True while the demo preparation still works on one of `steps` (a live note says so, and the page
    reruns when they are done); otherwise shows the failure of any of them and returns False.

    what: the part of the page that waits, as the note's last sentence names it ("The feature gallery").
    """
    current = progress()
    if current is None:
        return False
    if current.pending(steps):
        _live_note(tuple(steps), what)
        return True
    show_failures(current, steps)
    return False


def show_failures(current: DemoProgress, steps: Collection[str] | None = None) -> None:
    """One error naming the steps (of `steps`, default all) the preparation failed or ended before, and why."""
    failed = current.failures(steps)
    if not failed:
        return
    reasons = {s.error for s in failed}
    if len(reasons) == 1:
        what = f"{'; '.join(s.title for s in failed)}: {reasons.pop()}"
    else:
        what = "; ".join(f"{s.title}: {s.error}" for s in failed)
    st.error(f"The demo's background preparation did not finish {what}. {RETRY}; its log is `{current.log}`.",
             icon=":material/error:")


def overview() -> None:
    """The whole preparation, for the home page: a live note while it works, then its time or its failures."""
    current = progress()
    if current is None:
        return
    if current.working:
        _live_note(tuple(s.name for s in current.steps), "Each page that needs it")
    elif current.state == "done":
        took = (f": its background part ({', '.join(s.title for s in current.steps if s.state == 'done')}) took "
                f"{duration(current.elapsed())}" if any(s.state == "done" for s in current.steps) else "")
        st.caption(f"Demo workspace ready{took}.")
    else:
        show_failures(current)


@st.fragment(run_every=REFRESH_S)
def _live_note(steps: tuple[str, ...], what: str) -> None:
    """The note, redrawn every REFRESH_S seconds; the whole page reruns once `steps` are no longer pending."""
    current = progress()
    if current is None or not current.pending(steps):
        cached.list_runs.clear()  # listings are cached for a few seconds: read what was just written
        cached_sae.list_saes.clear()
        st.rerun(scope="app")
    _note(current, what)


def _note(current: DemoProgress, what: str) -> None:
    """What is being prepared, step i of n, the time spent of the time expected, and a bar."""
    n, total = len(current.steps), current.expected_total()
    detail = f" · {current.detail}" if current.detail else ""
    with st.container(border=True, key="demo_progress_note"):
        st.markdown(f":material/hourglass_top: **Preparing the demo: {current.running_title}** "
                    f"(step {current.index} of {n}){detail}")
        st.progress(min(1.0, current.elapsed() / max(total, 1.0)),
                    text=f"{duration(current.elapsed())} so far, about {duration(total)} in all")
        st.caption(f"{what} fills in when it is ready; the other pages work meanwhile.")
