"""Background work shared by all sessions: the UMAP warm-up and aligned UMAP of a run.

A page submits a job under a key and polls its state; it never blocks on it. Results go
to the store, so a finished job is read back like any cached result.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import streamlit as st

from core.store import Store

logger = logging.getLogger(__name__)

UMAP_WARMUP = "umap-warmup"


@dataclass
class Job:
    """One piece of background work and how far it got."""

    key: str
    label: str
    started: float = field(default_factory=time.time)
    state: str = "running"  # running | done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    error: str = ""
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def over(self) -> bool:
        return self.state in ("done", "failed")

    def progress(self, done: int, total: int, message: str = "") -> None:
        """A `core.progress.Progress` callback recording the job's advance."""
        self.done, self.total, self.message = done, total, message


class JobBoard:
    """Runs each job once in a daemon thread; its state is readable from any session."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job | None:
        return self._jobs.get(key)

    def submit(self, key: str, label: str, work: Callable[[Job], object]) -> Job:
        """Start `work(job)` unless a job under `key` runs or is done (a failed one is retried)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state != "failed":
                return job
            job = Job(key=key, label=label)
            self._jobs[key] = job
        threading.Thread(target=self._run, args=(job, work), name=f"layerscope-{key}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], object]) -> None:
        try:
            work(job)
            job.state = "done"
        except Exception as err:  # reported on the page that waits for it  # noqa: BLE001
            job.state = "failed"
            job.error = str(err) or type(err).__name__
            logger.error("job %s failed:\n%s", job.key, traceback.format_exc())
        finally:
            job.finished = time.time()


STOP_GRACE = 1.0  # seconds the server's own stop gets before the process ends regardless


def _exit_without_teardown() -> None:
    """End the stopped server process at once, its logs flushed and its child processes ended.

    Tearing down an interpreter holding torch, transformers and numba takes seconds, longer while a
    job still compiles or computes in its daemon thread; that would hold Ctrl-C and SIGTERM past 2 s.
    Nothing is lost by skipping it: the store writes atomically, so a job cut off here resumes (an
    extraction from its finished batches) or is recomputed on the next request.
    """
    logging.shutdown()
    for child in multiprocessing.active_children():
        child.terminate()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said there
            pass
    os._exit(1 if hasattr(sys, "last_value") else 0)  # sys.last_value: the main thread ended on an exception


@st.cache_resource
def board() -> JobBoard:
    """The server's one job board (shared by every session)."""
    from streamlit.runtime import Runtime

    if Runtime.exists() and type(Runtime.instance()) is Runtime:  # a real server, not a test's stand-in
        atexit.register(_exit_without_teardown)  # runs first: registered after torch's and numba's own
        _exit_once_stopping(Runtime.instance())
    return JobBoard()


def _exit_once_stopping(runtime, grace: float = STOP_GRACE) -> None:
    """End the process `grace` seconds after SIGTERM or Ctrl-C asked the server to stop, if it has not ended by then.

    The runtime's own stop closes every browser session first; with sessions open while a job
    runs it can wait on them for good (seen as a server idle in its event loop, still alive
    after SIGTERM). The store writes atomically, so cutting it off loses nothing.
    """
    from streamlit.runtime.runtime import RuntimeState

    def watch() -> None:
        while runtime.state not in (RuntimeState.STOPPING, RuntimeState.STOPPED):
            time.sleep(0.1)
        time.sleep(grace)
        _exit_without_teardown()

    threading.Thread(target=watch, name="layerscope-stop-watch", daemon=True).start()


# ----- UMAP ------------------------------------------------------------------------------------
def start_umap_warmup() -> Job:
    """Compile umap's numba code in the background once per server process."""

    def work(job: Job) -> None:
        import umap  # noqa: F401 - imported before the freeze below, like the page's own imports

        from core.analysis.projection import warm_up_umap

        gc.freeze()
        job.progress(0, 1, "compiling UMAP (numba), about a minute on first start")
        warm_up_umap()
        gc.freeze()  # numba's compiled code lives as long as the server: keep it out of every later collection
        job.progress(1, 1, "UMAP ready")

    job = board().get(UMAP_WARMUP)
    if job is not None:
        return job
    from core.analysis.projection import preload_imports

    preload_imports()
    # the modules imported so far (torch, scikit-learn; umap in the job) stay for good: moved out of the
    # collector's reach, the full collections that numba's compilation triggers scan only its own objects, not
    # the whole heap (otherwise they hold the GIL for long stretches: slow pages, and Ctrl-C waiting seconds)
    gc.freeze()
    return board().submit(UMAP_WARMUP, "UMAP warm-up", work)


def umap_ready() -> bool:
    """UMAP's numba code is compiled (later UMAPs take seconds, not a minute)."""
    job = board().get(UMAP_WARMUP)
    return job is not None and job.state == "done"


def aligned_umap_key(run_key: str) -> str:
    return f"aligned-umap-{run_key}"


def aligned_umap_job(run_key: str) -> Job | None:
    """The aligned-UMAP job of a run, if one was submitted on this server."""
    return board().get(aligned_umap_key(run_key))


def start_aligned_umap(store: Store, run_key: str, layers: Sequence[str]) -> Job:
    """Aligned UMAP of every layer of a run, into the store (after the warm-up, so numba compiles once)."""
    from core.analysis import projection

    def work(job: Job) -> None:
        warm = board().get(UMAP_WARMUP)
        while warm is not None and warm.state == "running":  # share the compilation, not repeat it
            job.progress(0, len(layers), "waiting for the UMAP warm-up")
            time.sleep(1)
        projection.aligned_projection_cached(store.open_run(run_key), list(layers), "umap", store,
                                             progress=job.progress)

    return board().submit(aligned_umap_key(run_key), f"aligned UMAP of {run_key}", work)
