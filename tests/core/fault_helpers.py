"""SIGKILL before the k-th write of a job, for every k: SQLite-style fault injection at each write.

`FaultDriver` starts this file as a process that imports Layerscope once. `prepare` names a
job (train an SAE, regenerate a figure, write a report) and runs it once, unwatched, into a
scratch place: every lazy import and first-call setup (torch's optimiser pulls in dynamo,
plotly its templates) is then done, so a try costs milliseconds, and that run is the fresh
reference the test compares with. Each `run(k)` forks a child that counts its writes (files
opened for writing, renames, folders made or removed, files removed) whose path starts with
one of the watched prefixes, and stops itself (SIGSTOP) just before write number k; the driver
then SIGKILLs it. A prefix such as `<workspace>/results/sae/<key>` covers the entry's folder
and its temporary siblings (`<key>.<uuid>.tmp`) but not locks, logs or other results, so k
runs over the entry's own steps. The kill point is exact, not a timing guess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_WRITE_EVENTS = {"os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CHANNEL = sys.stdout  # the driver's replies to the test (`serve` gives it its own file descriptor)


@dataclass(frozen=True)
class Outcome:
    """How one try ended: killed before the write asked for, or exited with `code` after `writes` writes."""

    killed: bool
    code: int | None = None
    writes: int | None = None


class FaultDriver:
    """The test's end: `prepare(job, ...)` once, then `run(k)`: the job killed just before its k-th write (k=0: not)."""

    def __init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, __file__], cwd=ROOT, env=env, text=True, bufsize=1,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fault driver ended (exit {self.proc.wait()})")
        return line.strip()

    def prepare(self, job: str, args: dict, watch: list[Path], warm_up: dict) -> None:
        """Make `job` (with `args`) the job of the next tries, watching writes under the `watch` prefixes.

        The job first runs once, unwatched, with `warm_up` replacing some of its args (a scratch
        workspace or output folder): the fresh run the tries are compared with.
        """
        self._send({"job": job, "args": args, "watch": [str(p) for p in watch], "warm_up": warm_up})
        line = self._line()
        if line != "ready":
            raise RuntimeError(f"the fault driver could not prepare {job!r}: {line}")

    def run(self, stop_at: int = 0) -> Outcome:
        self._send({"stop_at": stop_at})
        writes = None
        while True:
            line = self._line()
            if line.startswith("writes "):
                writes = int(line.split()[1])
            elif line == "killed":
                return Outcome(True)
            elif line.startswith("exit "):
                return Outcome(False, int(line.split()[1]), writes)

    def close(self) -> None:
        """End the driver (it holds nothing to save: every try's child has been waited for)."""
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait(timeout=30)


# ----- the driver's end ----------------------------------------------------------------
def _paths(event: str, args: tuple) -> list:
    if event == "open":
        return [args[0]]
    if event == "os.rename":
        return [args[0], args[1]]
    return [args[0]] if args else []


def _is_write(event: str, args: tuple) -> bool:
    if event == "open":
        mode, flags = args[1], args[2]
        return any(c in mode for c in "wax+") if mode else bool(flags & _WRITE_FLAGS)
    return event in _WRITE_EVENTS


def _stop_before(stop_at: int, prefixes: list[str]) -> list[int]:
    """Install the audit hook that counts writes under `prefixes` and stops this process before write `stop_at`."""
    count = [0]

    def hook(event: str, args: tuple) -> None:
        if event != "open" and event not in _WRITE_EVENTS:
            return
        paths = [os.fsdecode(p) for p in _paths(event, args) if isinstance(p, (str, bytes, os.PathLike))]
        if not paths or not _is_write(event, args):
            return
        if not any(os.path.abspath(p).startswith(prefix) for p in paths for prefix in prefixes):
            return
        count[0] += 1
        if count[0] == stop_at:
            os.kill(os.getpid(), signal.SIGSTOP)

    sys.addaudithook(hook)
    return count


def _job(name: str, args: dict) -> Callable[[], int]:
    """The job's function (returning its exit code), with everything it imports imported now."""
    from core.store import Store

    store = Store(args["workspace"])
    if name == "sae":  # the run is read from `runs_from`, the SAE written to `workspace`
        from core.analysis.sae import SAEConfig, train_sae_on_run

        acts = Store(args["runs_from"]).open_run(args["run"])
        config = SAEConfig(**args["config"])

        def train() -> int:
            train_sae_on_run(acts, args["layer"], config, store=store, device="cpu")
            return 0

        return train
    if name == "cli":
        from core.cli import main

        return lambda: main(args["argv"])
    if name == "report":
        from core.report import write_report

        def report() -> int:
            write_report(store, [], args["out"], specs=args["specs"], formats=args["formats"], tables=args["tables"],
                         publication=args["publication"])
            return 0

        return report
    raise ValueError(f"unknown job {name!r}")


def _say(line: str) -> None:
    """One line to the test, on the driver's own channel (the jobs' prints go to stderr)."""
    _CHANNEL.write(line + "\n")
    _CHANNEL.flush()


def _fork(job: Callable[[], int], stop_at: int, prefixes: list[str]) -> None:
    """Run `job` in a child killed before its write `stop_at`; tell the test how it ended."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            count = _stop_before(stop_at, prefixes)
            code = int(job() or 0)
            _say(f"writes {count[0]}")
        except BaseException:  # noqa: BLE001  (any failure of the child is reported as its exit code)
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        _CHANNEL.flush()
        os._exit(code)
    _, status = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _say("killed")
    else:
        _say(f"exit {os.waitstatus_to_exitcode(status)}")


def serve() -> None:
    """The driver: import Layerscope, then answer `prepare` and `run` messages (one JSON line each) from stdin."""
    global _CHANNEL
    _CHANNEL = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what a job prints (the CLI's summary) goes to stderr, never into the channel
    import torch

    torch.set_num_threads(1)  # a forked child must not need a thread pool started by its parent
    import torch._dynamo  # an optimiser's first use imports it: seconds, spent here while the test sets up

    import core.analysis.sae
    import core.cli
    import core.recipes
    import core.report  # noqa: F401  (imported once here, not in each child)

    job, prefixes = None, []
    for line in sys.stdin:
        message = json.loads(line)
        if "job" in message:
            try:
                code = _job(message["job"], {**message["args"], **message["warm_up"]})()
                if code:
                    raise RuntimeError(f"the warm-up run exited {code}")
                job = _job(message["job"], message["args"])
            except Exception as err:  # noqa: BLE001  (told to the test, which fails with it)
                traceback.print_exc()
                _say(f"error {err}".replace("\n", " "))
                continue
            prefixes = [os.path.abspath(p) for p in message["watch"]]
            _say("ready")
        else:
            _fork(job, message["stop_at"], prefixes)


if __name__ == "__main__":
    serve()
