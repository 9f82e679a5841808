"""The demo's background preparation as a JSON file in the workspace: which step, how far, how long, what failed.

The preparing process (`python -m core demo --heavy`) rewrites <workspace>/demo/progress.json
atomically (core.atomic) as it goes; the dashboard's pages read it to say what they wait for.
A process that died without saying so (its pid is gone) reads as failed, never as running.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import write_json_atomic

PROGRESS_VERSION = 1
PROGRESS_PATH = Path("demo") / "progress.json"  # inside the workspace
LOG_PATH = Path("demo") / "heavy.log"
FINISHED = ("done", "stored")  # step states whose result is in the workspace
SPEED_RANGE = (0.25, 8.0)  # how much slower or faster than expected a machine may be, for the estimate


@dataclass
class StepRecord:
    """One step of the preparation as the progress file records it."""

    name: str
    title: str  # what is prepared, as a note says it
    expected_s: float  # seconds it is expected to take (before it ran)
    state: str = "pending"  # pending | running | done | stored (found in the workspace) | failed
    seconds: float | None = None  # how long it took
    error: str | None = None  # why it failed


@dataclass
class DemoProgress:
    """The state of one preparation: its steps, the one running, how far it got, the time it takes."""

    size: str
    steps: list[StepRecord]
    pid: int = field(default_factory=os.getpid)
    state: str = "waiting"  # waiting (for the dashboard to answer) | running | done | failed | stopped
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    finished: float | None = None
    current: str | None = None  # name of the running step
    fraction: float = 0.0  # of the running step
    detail: str = ""  # what the running step is doing now, e.g. "batch 3 of 27"
    announced_s: float = 0.0  # the expected total said when the preparation started
    error: str | None = None  # why the whole preparation stopped (a failed step says its own)
    log: str = ""  # path of the preparing process's log
    version: int = PROGRESS_VERSION

    # ----- reading ---------------------------------------------------------------------------
    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    @property
    def index(self) -> int:
        """1-based position of the running step (the number of finished steps + 1 between steps)."""
        if self.current is not None:
            return [s.name for s in self.steps].index(self.current) + 1
        return min(len(self.steps), sum(s.state in (*FINISHED, "failed") for s in self.steps) + 1)

    @property
    def running_title(self) -> str:
        """What is being prepared now."""
        if self.state == "waiting":
            return "waiting for the dashboard to answer"
        return self.step(self.current).title if self.current else "starting"

    def alive(self) -> bool:
        """The preparing process still exists (a killed one never wrote that it stopped)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: it exists
            return True
        return True

    @property
    def working(self) -> bool:
        """Still preparing: waiting or running, in a process that is alive."""
        return self.state in ("waiting", "running") and self.alive()

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the preparation started (until it ended)."""
        end = self.finished if self.finished is not None else (now or time.time())
        return max(0.0, end - self.started)

    def expected_total(self, now: float | None = None) -> float:
        """Seconds the whole preparation should take: the time spent, plus what is left at the pace so far."""
        spent_expected = sum(s.expected_s for s in self.steps if s.state == "done")
        spent_actual = sum(s.seconds or 0.0 for s in self.steps if s.state == "done")
        speed = spent_actual / spent_expected if spent_expected > 0 and spent_actual > 0 else 1.0
        speed = min(max(speed, SPEED_RANGE[0]), SPEED_RANGE[1])
        left = sum(s.expected_s for s in self.steps if s.state == "pending" and s.name != self.current)
        if self.current is not None:
            left += self.step(self.current).expected_s * (1.0 - self.fraction)
        return self.elapsed(now) + left * speed

    def pending(self, names: Collection[str]) -> list[StepRecord]:
        """Those of the steps `names` still to come while the preparation works on."""
        if not self.working:
            return []
        return [s for s in self.steps if s.name in names and s.state in ("pending", "running")]

    def failures(self, names: Collection[str] | None = None) -> list[StepRecord]:
        """Steps (of `names`, default all) that failed, or that will not be prepared because the preparation
        ended before them (it failed, was stopped, or its process is gone), each with why."""
        chosen = [s for s in self.steps if names is None or s.name in names]
        failed = [s for s in chosen if s.state == "failed"]
        if self.working or self.state == "done":
            return failed
        if self.state in ("waiting", "running"):  # killed: it never wrote that it stopped
            why = f"the preparing process (pid {self.pid}) ended before it"
        else:
            why = self.error or f"the preparation {self.state} before it"
        return failed + [StepRecord(s.name, s.title, s.expected_s, "failed", error=why)
                         for s in chosen if s.state in ("pending", "running")]

    # ----- the file ----------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "elapsed_s": self.elapsed(), "expected_total_s": self.expected_total(),
                "step_index": self.index, "n_steps": len(self.steps)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemoProgress:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["steps"] = [StepRecord(**{k: v for k, v in s.items() if k in StepRecord.__dataclass_fields__})
                           for s in data.get("steps", [])]
        return cls(**values)


def progress_path(root: str | os.PathLike) -> Path:
    """Where a workspace's preparation writes its progress."""
    return Path(root) / PROGRESS_PATH


def read_progress(root: str | os.PathLike) -> DemoProgress | None:
    """The workspace's preparation progress, or None when none was started (or the file is unreadable)."""
    path = progress_path(root)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") != PROGRESS_VERSION:
        return None
    try:
        return DemoProgress.from_dict(data)
    except (TypeError, KeyError, ValueError, StopIteration):
        return None


class ProgressFile:
    """A DemoProgress kept in memory and written to the workspace: on every change of step, and at most
    once every `interval` seconds while a step reports how far it is."""

    def __init__(self, root: str | os.PathLike, progress: DemoProgress, *, interval: float = 1.0) -> None:
        self.path = progress_path(root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.interval = interval
        self._written = 0.0
        if not progress.announced_s:
            progress.announced_s = progress.expected_total()
        self.write()

    def write(self) -> None:
        self.progress.updated = time.time()
        write_json_atomic(self.path, self.progress.as_dict())
        self._written = time.monotonic()

    def set_state(self, state: str, error: str | None = None) -> None:
        self.progress.state = state
        self.progress.error = error
        if state in ("done", "failed", "stopped"):
            self.progress.finished = time.time()
            self.progress.current = None
        self.write()

    def mark(self, names: Iterable[str], state: str) -> None:
        """Record steps found in the workspace (state "stored") before any work starts."""
        for name in names:
            self.progress.step(name).state = state
        self.write()

    def begin(self, name: str) -> None:
        self.progress.state = "running"
        self.progress.current, self.progress.fraction, self.progress.detail = name, 0.0, ""
        self.progress.step(name).state = "running"
        self.write()

    def report(self, done: int, total: int, what: str = "") -> None:
        """A `core.progress.Progress` callback for the running step."""
        self.progress.fraction = min(1.0, done / total) if total else 0.0
        self.progress.detail = what
        if time.monotonic() - self._written >= self.interval or done >= total:
            self.write()

    def end(self, name: str, state: str, seconds: float, error: str | None = None) -> None:
        record = self.progress.step(name)
        record.state, record.seconds, record.error = state, seconds, error
        self.progress.current, self.progress.fraction, self.progress.detail = None, 0.0, ""
        self.write()
