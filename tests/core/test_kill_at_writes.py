"""SIGKILL at the writes of an extraction and of a stored result: nothing damaged looks complete,
`verify` lists what was left over, and the next request resumes or recomputes the same arrays.

The kill points are found by watching the files the writer leaves (no sleeps as timing guesses).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import core
from core.analysis.similarity import similarity_matrix
from core.store import Store
from core.verify import DAMAGED, ORPHAN, verify

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXTRACT = ["-m", "core", "-v", "extract", "--model", "digits-mlp", "--data", "demo:digits",
           "--batch-size", "4", "--device", "cpu"]


def _start(args: list[str], workspace: Path) -> subprocess.Popen:
    """`python <args>` with `workspace` as the workspace, its output captured."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LAYERSCOPE_WORKSPACE": str(workspace)}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, condition: Callable[[], bool]) -> bool:
    """SIGKILL `proc` as soon as `condition()` holds; False if it ended first."""
    while proc.poll() is None:
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
    return False


def _batches_done(partial: Path) -> int:
    try:
        return int(json.loads((partial / "progress.json").read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0


def _no_damaged_complete_entry(store: Store) -> list:
    report = verify(store, min_age_s=0)
    assert [p for p in report.problems if p.what == DAMAGED] == []
    assert all(p.what == ORPHAN for p in report.problems if not p.path.startswith("locks/"))
    return report.problems


def test_extract__killed_after_a_batch_mid_way_and_while_finalising_resumes_to_the_same_arrays(tmp_path, reliability):
    reference = core.extract(core.load_model("digits-mlp", device="cpu"), "demo:digits", batch_size=4,
                             store=Store(tmp_path / "reference"))
    store = Store(tmp_path / "workspace")
    partial = store.partial_dir(reference.key)
    total = -(-reference.n_inputs // 4)

    points = {
        "after one batch": lambda: _batches_done(partial) >= 1,
        "mid-way": lambda: _batches_done(partial) >= total // 2,
        "finalising": lambda: (partial / "table.parquet").exists() or (partial / "meta.json").exists(),
    }
    killed_at = []
    for name, condition in points.items():
        proc = _start(EXTRACT, store.root)
        if not _kill_when(proc, condition):  # it finished between two looks: the run is complete
            assert proc.returncode == 0, proc.stderr.read()
            break
        killed_at.append(name)
        assert not store.has_run(reference.key), name  # a killed extraction never looks complete
        problems = _no_damaged_complete_entry(store)
        if partial.exists():
            assert f"runs/{partial.name}" in [p.path for p in problems if p.what == ORPHAN], name

    assert killed_at[:2] == ["after one batch", "mid-way"]  # 450 batches: these two are always caught
    resumable = _batches_done(partial) > 0
    proc = _start(EXTRACT, store.root)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert ("resuming run" in err) == resumable, killed_at
    again = store.open_run(reference.key)
    differs = any(not np.array_equal(np.asarray(again[n]), np.asarray(reference[n])) for n in reference.layer_names)
    reliability("SIGKILL during an extraction (after a batch, mid-way, finalising)", len(killed_at), int(differs))
    for layer in reference.layer_names:
        np.testing.assert_array_equal(np.asarray(again[layer]), np.asarray(reference[layer]))
    assert not verify(store).failed


RESULT_WRITER = """
import sys
from core.analysis.similarity import similarity_matrix
from core.store import Store
store = Store(sys.argv[1])
acts = store.open_run(sys.argv[2])
for seed in range(int(sys.argv[3])):
    similarity_matrix(acts, acts, "linear_cka", store=store, seed=seed, max_points=200)
"""


def test_cached_result__killed_while_writing_never_looks_complete_and_is_recomputed(tmp_path, reliability):
    store = Store(tmp_path / "workspace")
    acts = core.extract(core.load_model("digits-mlp", device="cpu"), core.load_dataset("demo:digits", limit=600),
                        batch_size=64, store=store)
    n_seeds = 40
    results = store.root / "results" / "similarity"

    def writing() -> bool:  # a result folder is being filled under its temporary name
        return results.is_dir() and any(p.name.endswith(".tmp") for p in os.scandir(results))

    kills = 0
    for _ in range(3):
        proc = _start(["-c", RESULT_WRITER, str(store.root), acts.key, str(n_seeds)], store.root)
        if not _kill_when(proc, writing):
            break
        kills += 1
        problems = _no_damaged_complete_entry(store)
        assert any(p.path.endswith(".tmp") for p in problems)  # the half-written result, an orphan
        verify(store, repair=True, min_age_s=0)
    assert kills >= 1

    proc = _start(["-c", RESULT_WRITER, str(store.root), acts.key, str(n_seeds)], store.root)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert not verify(store, min_age_s=0).failed  # left: only the unheld lock files of finished writers
    reliability("SIGKILL while a result is written", kills, int(verify(store, min_age_s=0).failed))
    for seed in (0, n_seeds // 2, n_seeds - 1):
        stored = similarity_matrix(acts, acts, "linear_cka", store=store, seed=seed, max_points=200)
        fresh = similarity_matrix(acts, acts, "linear_cka", seed=seed, max_points=200)
        np.testing.assert_allclose(stored.matrix, fresh.matrix, rtol=1e-6)
