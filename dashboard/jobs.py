"""Background work shared by all sessions: UMAP warm-up and long projections.

A page submits a job under a key and polls its status; it never blocks on it.
Results go to the store, so a finished job is read back like any cached result.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

logger = logging.getLogger(__name__)


@dataclass
class Job:
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

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.done, self.total, self.message = done, total, message


class JobBoard:
    """Runs each job once in a daemon thread; status readable from any session."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job | None:
        return self._jobs.get(key)

    def submit(self, key: str, label: str, work: Callable[[Job], object]) -> Job:
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
        except Exception as err:  # reported on the page that waits for it
            job.state = "failed"
            job.error = str(err) or type(err).__name__
            logger.error("job %s failed:\n%s", job.key, traceback.format_exc())
        finally:
            job.finished = time.time()


@st.cache_resource
def board() -> JobBoard:
    return JobBoard()


UMAP_WARMUP = "umap-warmup"


def start_umap_warmup() -> Job:
    """Compile umap's numba code in the background once per server process."""

    def work(job: Job) -> None:
        from core.analysis.projection import warm_up_umap

        job.progress(0, 1, "compiling UMAP (numba), about a minute on first start")
        warm_up_umap()
        job.progress(1, 1, "UMAP ready")

    job = board().get(UMAP_WARMUP)
    if job is not None:
        return job
    from core.analysis.projection import preload_imports

    preload_imports()
    return board().submit(UMAP_WARMUP, "UMAP warm-up", work)


def umap_ready() -> bool:
    job = board().get(UMAP_WARMUP)
    return job is not None and job.state == "done"
