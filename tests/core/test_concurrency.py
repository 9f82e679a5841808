"""Processes sharing a workspace: one computes a key, the others wait and read it; different keys run side by side."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.store import Store

REPO = Path(__file__).resolve().parents[2]
GUARD_S = 120  # a test waits at most this long for a child: a deadlock fails instead of hanging

# A child process: waits for the "go" file, then asks the store for (kind, {"p": key}).
# Its compute records "start <pid> <key>" and "end <pid> <key>" lines in the log, and returns
# the child's pid, so equal results prove the second process read the first one's entry.
_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from dataclasses import dataclass
    from pathlib import Path

    import numpy as np

    from core.store import Store

    @dataclass(frozen=True)
    class Computed:
        pid: int
        values: np.ndarray

    workspace, key, mode, log, go = sys.argv[1:6]
    wait_for = sys.argv[6] if len(sys.argv) > 6 else ""  # a file to wait for inside compute

    def note(what):
        with open(log, "a") as handle:  # one short O_APPEND write per line: lines never interleave
            handle.write(f"{what} {os.getpid()} {key}\\n")

    def wait(path, limit=60.0):
        deadline = time.monotonic() + limit
        while not Path(path).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never appeared")
            time.sleep(0.02)

    def compute():
        note("start")
        Path(f"{log}.started-{key}").touch()
        if wait_for:
            wait(wait_for)
        if mode == "raise":
            time.sleep(0.5)  # the other process, which asked just now, is waiting on the lock
            raise RuntimeError("compute failed on purpose")
        if not wait_for:
            time.sleep(1.5)
        note("end")
        return Computed(pid=os.getpid(), values=np.full(4, float(os.getpid())))

    wait(go)
    Path(f"{log}.asked-{key}-{mode}").touch()
    try:
        result = Store(workspace).cached("slow_demo", {"p": key}, compute, Computed)
    except RuntimeError as err:
        print(json.dumps({"error": str(err)}))
        sys.exit(3)
    print(json.dumps({"pid": result.pid, "values": result.values.tolist(), "me": os.getpid()}))
    """
)


CONC = "two processes or threads asking for the same or different keys at once: each request answered"


def _spawn(workspace: Path, key: str, mode: str, log: Path, go: Path, wait_for: str = "") -> subprocess.Popen:
    args = [sys.executable, "-c", _CHILD, str(workspace), key, mode, str(log), str(go), wait_for]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(child: subprocess.Popen) -> tuple[int, dict]:
    try:
        out, err = child.communicate(timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("a child process did not finish: the store's lock deadlocked")
    lines = out.strip().splitlines()
    assert lines, err
    return child.returncode, json.loads(lines[-1])


def _log(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_cached__two_processes_same_key__computed_once_and_both_read_it(tmp_path, reliability):
    log, go = tmp_path / "log", tmp_path / "go"
    children = [_spawn(tmp_path / "ws", "same", "ok", log, go) for _ in range(2)]
    go.touch()
    (rc_a, a), (rc_b, b) = (_finish(child) for child in children)
    reliability(CONC, 2, int(rc_a != 0) + int(rc_b != 0 or a.get("values") != b.get("values")))
    assert rc_a == rc_b == 0
    assert [line[0] for line in _log(log)] == ["start", "end"]  # exactly one compute
    assert a["pid"] == b["pid"] and a["values"] == b["values"]  # the other process read that compute's result
    assert not list((tmp_path / "ws").rglob("*.tmp"))


def test_cached__two_keys_in_parallel__both_computed_and_overlapping(tmp_path, reliability):
    log, go = tmp_path / "log", tmp_path / "go"
    # each compute waits until the other one has started: if one key waited for the other's lock,
    # that wait would never end and the child would fail with TimeoutError
    children = [_spawn(tmp_path / "ws", key, "ok", log, go, f"{log}.started-{other}") for key, other in ("ab", "ba")]
    go.touch()
    results = [_finish(child) for child in children]
    reliability(CONC, 2, sum(rc != 0 for rc, _ in results))
    assert [rc for rc, _ in results] == [0, 0]
    events = _log(log)
    assert sorted((what, key) for what, _, key in events) == [("end", "a"), ("end", "b"), ("start", "a"), ("start", "b")]
    first_end = min(i for i, (what, _, _) in enumerate(events) if what == "end")
    assert [what for what, _, _ in events[:first_end]] == ["start", "start"]  # both computes began before either ended
    assert len({pid for _, pid, _ in events}) == 2


def test_cached__compute_raising_while_another_waits__the_waiter_computes(tmp_path, reliability):
    log, go = tmp_path / "log", tmp_path / "go"
    # the failing compute raises only after the other process has asked for the same key
    failing = _spawn(tmp_path / "ws", "k", "raise", log, go, f"{log}.asked-k-ok")
    waiting = _spawn(tmp_path / "ws", "k", "ok", log, log.parent / f"{log.name}.started-k")  # asks once that compute runs
    go.touch()
    (rc_failed, failed), (rc_ok, ok) = _finish(failing), _finish(waiting)
    reliability(CONC, 2, int(rc_ok != 0))  # the raising one was meant to fail; the waiter must not
    assert rc_failed == 3 and "on purpose" in failed["error"]
    assert rc_ok == 0 and ok["pid"] == ok["me"]  # computed by the waiter itself, not read from a half entry
    assert [line[0] for line in _log(log)] == ["start", "start", "end"]
    assert not list((tmp_path / "ws").rglob("*.tmp"))


def test_cached__threads_same_key__computed_once(tmp_path, reliability):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Value:
        values: np.ndarray

    calls: list[int] = []
    inside = threading.Event()

    def compute() -> Value:
        calls.append(threading.get_ident())
        inside.set()
        threading.Event().wait(0.3)  # keep the lock while the other thread asks
        return Value(values=np.arange(3.0) + len(calls))

    results: list[Value] = []
    threads = [threading.Thread(target=lambda: results.append(Store(tmp_path).cached("t", {"p": 1}, compute, Value)))
               for _ in range(2)]
    threads[0].start()
    inside.wait(GUARD_S)
    threads[1].start()
    for thread in threads:
        thread.join(GUARD_S)
    reliability(CONC, 2, 2 - len(results))
    assert len(calls) == 1 and len(results) == 2
    np.testing.assert_array_equal(results[0].values, results[1].values)


def test_lock__exception_releases_and_unsafe_names_become_safe_files(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(ValueError), store.lock("x"):
        raise ValueError("inside the lock")
    with store.lock("x"):  # would wait forever if the error had kept it
        pass
    path = store.lock_path("../../etc/passwd kind/with spaces")
    assert path.parent == store.locks_dir and "/" not in path.name and not path.name.startswith(".")
    assert store.lock_path("a/b") != store.lock_path("a_b")  # the hash keeps distinct names apart
    assert store.lock_path("train-digits-mlp-0").name == "train-digits-mlp-0.lock"  # safe names unchanged


def test_lock__a_lock_file_removed_while_held_still_excludes(tmp_path):
    store = Store(tmp_path)
    order: list[str] = []

    def waiter() -> None:
        with store.lock("k"):
            order.append("waiter")

    old = store.lock("k")
    old.__enter__()
    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)  # the waiter opens the old lock file and blocks on it
    store.lock_path("k").unlink()  # a cleanup removes the lock file while it is held
    new = store.lock("k")
    new.__enter__()  # a fresh file of the same name
    old.__exit__(None, None, None)  # the waiter wakes on the removed file and must move on to the fresh one
    time.sleep(0.2)
    order.append("holder")
    new.__exit__(None, None, None)
    thread.join(GUARD_S)
    assert order == ["holder", "waiter"]


# ----- two CLIs extracting the same run -------------------------------------------------------------------------
_EXTRACT = [sys.executable, "-m", "core", "extract", "--model", "digits-mlp", "--data", "demo:digits",
            "--layers", "fc1,logits", "--json"]


@pytest.mark.slow
def test_cli_extract__two_processes_same_run__one_entry_same_key_same_arrays(tmp_path, reliability):
    workspace = tmp_path / "ws"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    children = [
        subprocess.Popen([*_EXTRACT, "--workspace", str(workspace)], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = []
    for child in children:
        try:
            out, err = child.communicate(timeout=GUARD_S * 2)
        except subprocess.TimeoutExpired:
            child.kill()
            pytest.fail("an extraction did not finish: the run's lock deadlocked")
        assert child.returncode == 0, err[-2000:]
        outs.append(json.loads(out))
    assert outs[0]["key"] == outs[1]["key"]
    runs = Store(workspace).list_runs()
    assert [run["key"] for run in runs] == [outs[0]["key"]]
    assert not list((workspace / "runs").glob("*.partial"))

    # one process alone, on the same trained weights, gives the same arrays
    import core

    alone = tmp_path / "alone"
    shutil.copytree(workspace / "models", alone / "models")
    single = core.extract("digits-mlp", "demo:digits", layers=["fc1", "logits"], store=Store(alone))
    shared = Store(workspace).open_run(outs[0]["key"])
    assert single.key == shared.key
    differs = any(not np.array_equal(np.asarray(shared[n]), np.asarray(single[n])) for n in ("fc1", "logits"))
    reliability(CONC, 2, int(differs))
    for layer in ("fc1", "logits"):
        np.testing.assert_array_equal(np.asarray(shared[layer]), np.asarray(single[layer]))
