"""The demo's heavy part as a background process: started by `make run`, reporting to the workspace.

`start_heavy` launches `python -m core demo --heavy` detached from the caller (logging to
<workspace>/demo/heavy.log); that process takes the workspace's demo lock (one preparation at a time),
waits for the dashboard to answer, then prepares each heavy step, writing its progress to
<workspace>/demo/progress.json. A step that fails is recorded there with its error (its traceback
goes to the log), the steps that need it fail with it, and the others go on.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from core.demo import DemoSize, DemoStep, DemoWorkspace, demo_size, step_titles, steps
from core.demo_progress import FINISHED, LOG_PATH, DemoProgress, ProgressFile, StepRecord
from core.store import Store

logger = logging.getLogger(__name__)


def prepare_heavy(store: Store, *, size: DemoSize | None = None, load_model=None, after: str | None = None,
                  wait_s: float = 300.0) -> DemoProgress:
    """Prepare the heavy part step by step, writing progress to the workspace; returns the final progress.

    after: a URL (the dashboard's health check) to wait for, at most `wait_s` seconds, before any work,
    so that the first page is served first; once it stops answering, the preparation stops between steps.
    A failed step is recorded with its error (and its traceback in the log); the steps needing it fail too.
    """
    size = size or demo_size()
    demo = DemoWorkspace(store, size, load_model=load_model)
    heavy = steps("heavy")
    records = [StepRecord(s.name, s.title, round(s.expected_s * size.time_scale, 1)) for s in heavy]
    tracker = ProgressFile(store.root, DemoProgress(size=size.name, steps=records, log=str(store.root / LOG_PATH)))
    try:
        if after and not _answers(after, wait_s):
            tracker.set_state("failed", f"the dashboard did not answer at {after} within {wait_s:.0f} s; "
                              "run `python -m core demo --heavy` to prepare the rest")
            return tracker.progress
        missing = [s.title for s in steps("light") if not demo.stored(s.name)]
        if missing:
            tracker.set_state("failed", f"the light part is missing ({'; '.join(missing)}): run `python -m core demo`")
            return tracker.progress
        tracker.mark([s.name for s in heavy if demo.stored(s.name)], "stored")
        tracker.progress.started = time.time()  # the work starts now: waiting for the server is not part of it
        tracker.progress.announced_s = tracker.progress.expected_total()
        tracker.set_state("running")
        for step in heavy:
            if tracker.progress.step(step.name).state in FINISHED:
                continue
            if after and _server_gone(after):
                tracker.set_state("stopped", "the dashboard stopped; the rest is prepared by the next `make run`")
                return tracker.progress
            _run_step(demo, step, tracker)
    except BaseException:  # Ctrl-C or a kill between steps: say so, then stop
        tracker.set_state("stopped", "interrupted; run `python -m core demo --heavy` to go on")
        raise
    failed = [s.title for s in tracker.progress.steps if s.state == "failed"]
    tracker.set_state("failed" if failed else "done", f"failed: {'; '.join(failed)}" if failed else None)
    return tracker.progress


def _run_step(demo: DemoWorkspace, step: DemoStep, tracker: ProgressFile) -> None:
    """One heavy step, recorded as done or failed (with why)."""
    states = {r.name: r.state for r in tracker.progress.steps}
    failed_needs = [n for n in step.needs if states.get(n) == "failed"]
    if failed_needs:
        tracker.end(step.name, "failed", 0.0, f"needs {', '.join(step_titles(failed_needs))}, which failed")
        return
    tracker.begin(step.name)
    started = time.time()
    try:
        demo.prepare(step.name, progress=tracker.report)
    except Exception as err:  # noqa: BLE001 - recorded for the pages, which show it; the next steps go on
        logger.error("demo step %s failed:\n%s", step.name, traceback.format_exc())
        tracker.end(step.name, "failed", time.time() - started, str(err) or type(err).__name__)
        return
    tracker.end(step.name, "done", time.time() - started)
    logger.info("demo step %s done in %.0f s", step.name, time.time() - started)


# ----- the process -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def heavy_lock(store: Store) -> Iterator[bool]:
    """Hold the workspace's demo-preparation lock if no other process does; yields whether it is held."""
    folder = store.root / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "demo-heavy.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start_heavy(store: Store, *, size: DemoSize, after: str | None = None) -> int | None:
    """Start `python -m core demo --heavy` as a background process logging to the workspace; its pid,
    or None when a preparation of this workspace is already under way."""
    with heavy_lock(store) as free:  # held by a preparing process (the child takes it again)
        if not free:
            return None
    log = store.root / LOG_PATH
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "core", "demo", "--heavy", "--workspace", str(store.root), "--size", size.name,
               *(["--after", after] if after else [])]
    with open(log, "a") as out:  # the child keeps its own copy of the handle
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n")
        out.flush()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, close_fds=True,
                                 cwd=Path(__file__).resolve().parents[1])
    return child.pid


def _answers(url: str, wait_s: float) -> bool:
    """`url` answers within `wait_s` seconds (polled every half second)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            time.sleep(0.5)
    return False


def _server_gone(url: str) -> bool:
    """Nothing listens at `url` any more (a slow answer on a busy machine is not gone)."""
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.URLError as err:
        return isinstance(err.reason, ConnectionRefusedError)
    except OSError:
        return False
    return False
