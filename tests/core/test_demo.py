"""The demo workspace (core/demo.py, core/demo_background.py, core/demo_progress.py): what is prepared,
that a second preparation skips what exists, and that a failure is recorded, never silent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core import demo
from core.demo_background import heavy_lock, prepare_heavy, start_heavy
from core.demo_progress import DemoProgress, ProgressFile, StepRecord, progress_path, read_progress
from core.errors import LayerscopeError

# a few inputs and a few SAE steps: the same steps as the full demo, in seconds
TINY = demo.DemoSize("tiny", sentences=40, cities=30, sae_steps=12, sae_batch=64, time_scale=0.05)


def test_steps__the_light_part_holds_the_runs_the_first_pages_open_on():
    light = [s.name for s in demo.steps("light")]
    assert light == ["minilm-mean", "minilm-tokens", "minilm-cities"]
    assert [demo.RUN_STEPS[name][2] for name in light] == ["mean", "tokens", "mean"]


def test_steps__the_heavy_part_holds_what_the_other_pages_need_after_what_it_reads():
    heavy = [s.name for s in demo.steps("heavy")]
    assert set(heavy) == {"geometry", "sae", "sae-seed1", "matching", "twin", "smollm2"}
    order = [s.name for s in demo.STEPS]
    for step in demo.STEPS:
        for need in step.needs:
            assert order.index(need) < order.index(step.name), (step.name, need)
    with pytest.raises(LayerscopeError, match="part='medium' must be one of: light, heavy"):
        demo.steps("medium")


def test_demo_size__from_the_environment_and_checked(monkeypatch):
    monkeypatch.delenv(demo.SIZE_ENV, raising=False)
    assert demo.demo_size().name == "full"
    monkeypatch.setenv(demo.SIZE_ENV, "test")
    assert demo.demo_size().name == "test"
    assert demo.demo_size("full").name == "full"  # the argument wins
    with pytest.raises(LayerscopeError, match="size='huge' must be one of: full, test"):
        demo.demo_size("huge")
    full, test = demo.SIZES["full"], demo.SIZES["test"]
    assert test.sentences < 864 and test.sae_steps < full.sae_steps
    assert demo.sae_config(full, 0).total_steps == full.sae_steps <= 3000  # a few thousand steps at most
    assert demo.sae_config(full, 0) != demo.sae_config(full, 1)  # two seeds, two SAEs


def test_progress__expected_total_follows_the_pace_of_the_finished_steps():
    progress = DemoProgress(size="full", steps=[StepRecord("a", "A", 10.0, "done", seconds=20.0),
                                                StepRecord("b", "B", 10.0), StepRecord("c", "C", 30.0)],
                            state="running", started=1000.0, current="b", fraction=0.5)
    # 20 s spent so far; twice as slow as expected: (5 + 30) expected seconds left take 70
    assert progress.expected_total(now=1020.0) == pytest.approx(20.0 + 2 * 35.0)
    assert progress.index == 2
    assert progress.running_title == "B"
    assert [s.name for s in progress.pending(["b", "c", "a"])] == ["b", "c"]  # this process is alive


def test_progress__a_preparation_whose_process_is_gone_reads_as_failed(tmp_path):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    gone = int(child.stdout)
    progress = DemoProgress(size="full", steps=[StepRecord("a", "A", 1.0, "done"), StepRecord("b", "B", 1.0)],
                            pid=gone, state="running", current="b")
    assert not progress.working
    assert progress.pending(["b"]) == []  # nothing to wait for
    failed = progress.failures(["a", "b"])
    assert [s.name for s in failed] == ["b"]
    assert f"pid {gone}" in failed[0].error


def test_progress_file__written_atomically_and_read_back(tmp_path):
    tracker = ProgressFile(tmp_path, DemoProgress(size="test", steps=[StepRecord("a", "A", 5.0)]))
    tracker.begin("a")
    tracker.report(1, 4, "batch 1 of 4")
    tracker.end("a", "done", 2.5)
    tracker.set_state("done")
    data = json.loads(progress_path(tmp_path).read_text())
    assert data["state"] == "done" and data["n_steps"] == 1 and data["announced_s"] == pytest.approx(5.0, abs=1)
    back = read_progress(tmp_path)
    assert back.steps[0].state == "done" and back.steps[0].seconds == 2.5
    assert [p.name for p in progress_path(tmp_path).parent.iterdir()] == ["progress.json"]  # no temp file left
    progress_path(tmp_path).write_text("{not json")
    assert read_progress(tmp_path) is None


def test_prepare_heavy__without_the_light_part_fails_and_says_what_to_run(store):
    progress = prepare_heavy(store, size=TINY)
    assert progress.state == "failed"
    assert "python -m core demo" in progress.error
    recorded = read_progress(store.root)
    assert recorded.state == "failed" and recorded.error == progress.error
    assert {s.name for s in recorded.failures()} == {s.name for s in demo.steps("heavy")}


def test_start_heavy__not_twice_for_one_workspace(store):
    with heavy_lock(store) as held:  # as a preparing process holds it
        assert held
        assert start_heavy(store, size=TINY) is None
        with heavy_lock(store) as again:
            assert not again


@pytest.mark.slow
def test_prepare__everything_then_skips_what_exists_and_records_a_failure(store, minilm, smollm2):
    import core

    def load_model(name, reinit=False, seed=0):  # the session's models; the twin is built here
        if not reinit:
            return {"minilm": minilm, "smollm2": smollm2}[name]
        return core.load_model(name, reinit=True, seed=seed, device="cpu")

    prepared = demo.prepare_light(store, size=TINY, load_model=load_model)
    assert {name: run["pooling"] for name, run in prepared.items()} == {
        "minilm-mean": "mean", "minilm-tokens": "tokens", "minilm-cities": "mean"}
    assert all(run["n_inputs"] == (30 if name == "minilm-cities" else 40) for name, run in prepared.items())

    # a damaged tokens run: every step reading it fails, with why; the others are prepared
    tokens = store.run_dir(prepared["minilm-tokens"]["key"])
    damaged = next(p for p in sorted(tokens.rglob("*.npy")))
    original = damaged.read_bytes()
    damaged.write_bytes(original[:-8] + b"\0" * 8)
    progress = prepare_heavy(store, size=TINY, load_model=load_model)
    states = {s.name: s.state for s in progress.steps}
    assert states == {"geometry": "failed", "sae": "failed", "sae-seed1": "failed", "matching": "failed",
                      "twin": "done", "smollm2": "done"}
    assert progress.state == "failed"
    assert "damaged" in progress.step("sae").error
    assert "needs the demo SAE" in progress.step("matching").error
    assert read_progress(store.root).failures(["matching"])[0].name == "matching"

    damaged.write_bytes(original)
    progress = prepare_heavy(store, size=TINY, load_model=load_model)
    assert progress.state == "done", [(s.name, s.error) for s in progress.steps]
    assert {s.name: s.state for s in progress.steps} == {
        "geometry": "done", "sae": "done", "sae-seed1": "done", "matching": "done", "twin": "stored",
        "smollm2": "stored"}
    workspace = demo.DemoWorkspace(store, TINY)
    assert all(workspace.stored(s.name) for s in demo.STEPS)
    assert len(core.analysis.sae.list_saes(store)) == 2

    entries = sorted(str(p) for p in (store.root / "results").rglob("meta.json"))
    runs = [r["key"] for r in store.list_runs()]
    progress = prepare_heavy(store, size=TINY, load_model=load_model)
    assert progress.state == "done"
    assert {s.state for s in progress.steps} == {"stored"}
    assert sorted(str(p) for p in (store.root / "results").rglob("meta.json")) == entries  # nothing recomputed
    assert [r["key"] for r in store.list_runs()] == runs
    assert progress.announced_s < sum(s.expected_s for s in progress.steps)


def test_cli_demo__heavy_without_the_light_part_exits_1_and_records_why(tmp_path):
    env = {**os.environ, "LAYERSCOPE_WORKSPACE": str(tmp_path / "ws")}
    done = subprocess.run([sys.executable, "-m", "core", "demo", "--heavy", "--size", "test"], env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "python -m core demo" in done.stderr
    assert read_progress(tmp_path / "ws").state == "failed"
