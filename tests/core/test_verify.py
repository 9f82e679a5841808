"""`verify`: every entry's checksums, orphans of killed writers, stale locks, and `--repair`."""

from __future__ import annotations

import fcntl
import os
import shutil
import time

import numpy as np
import pytest

import core
from core.analysis.similarity import similarity_matrix
from core.cli import main
from core.store import Store
from core.verify import DAMAGED, ORPHAN, STALE_LOCK, verify


def _digits_run(store: Store):
    model = core.load_model("digits-mlp", workspace=store.root, device="cpu")
    return core.extract(model, core.load_dataset("demo:digits", limit=24), layers="all", batch_size=8, store=store)


def _cka(store: Store, acts):
    return similarity_matrix(acts, acts, "linear_cka", store=store)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A real small workspace: one digits-mlp run and one CKA result stored through Store.cached."""
    store = Store(tmp_path_factory.mktemp("template") / "workspace")
    _cka(store, _digits_run(store))
    return store


@pytest.fixture()
def workspace(template, tmp_path):
    """A copy of the template workspace for one test, and its run."""
    store = Store(shutil.copytree(template.root, tmp_path / "workspace"))
    return store, store.open_run(store.list_runs()[0]["key"])


def _flip_last_byte(path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def _age(path, seconds: float = 3600) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _whats(report) -> list[str]:
    return sorted(p.what for p in report.problems)


def test_verify__clean_workspace_exits_0(workspace, capsys):
    store, _ = workspace
    report = verify(store)
    assert report.clean and report.checked == 2  # the run and the result
    assert main(["verify", "--workspace", str(store.root)]) == 0
    assert "2 entries checked, 0 damaged, 0 orphaned, 0 stale locks" in capsys.readouterr().out


def test_verify__flipped_bytes_are_damaged_repaired_and_recomputed(workspace, capsys, reliability):
    store, acts = workspace
    before_layer = np.array(acts[acts.layer_names[-1]])
    before_cka = np.array(_cka(store, acts).matrix)
    run_npy = store.run_dir(acts.key) / "layers" / "000.npy"
    result_npy = next((store.root / "results").rglob("*.npy"))
    _flip_last_byte(run_npy)
    _flip_last_byte(result_npy)

    assert main(["verify", "--workspace", str(store.root)]) == 1
    out = capsys.readouterr().out
    assert "damaged: runs/" in out and "checksum of layers/000.npy does not match" in out
    assert "2 entries checked, 2 damaged, 0 orphaned, 0 stale locks" in out

    assert main(["verify", "--repair", "--workspace", str(store.root)]) == 0
    moved = list((store.root / "damaged").glob("*/runs/*")) + list((store.root / "damaged").glob("*/results/*/*"))
    assert len(moved) == 2
    assert not store.has_run(acts.key)

    again = _digits_run(store)  # the next request recomputes both
    assert again.key == acts.key
    recomputed = [np.array_equal(np.array(again[again.layer_names[-1]]), before_layer),
                  np.allclose(np.array(_cka(store, again).matrix), before_cka, rtol=1e-6)]
    reliability("a flipped byte in a run and in a result: found, moved aside, recomputed", 2,
                recomputed.count(False))
    np.testing.assert_array_equal(np.array(again[again.layer_names[-1]]), before_layer)
    np.testing.assert_allclose(np.array(_cka(store, again).matrix), before_cka, rtol=1e-6)
    assert verify(store).clean


def test_verify__missing_file_and_unreadable_meta_are_damaged(workspace):
    store, acts = workspace
    (store.run_dir(acts.key) / "lengths.npy").unlink()
    result_meta = next((store.root / "results").rglob("meta.json"))
    result_meta.write_text("{not json")
    reasons = sorted(p.reason for p in verify(store).problems)
    assert reasons == ["lengths.npy is missing", "meta.json is unreadable"]


def test_verify__stale_partial_and_tmp_file_are_orphans_and_repaired(workspace, reliability):
    store, acts = workspace
    partial = store.partial_dir("0123456789abcdef0123")
    partial.mkdir()
    (partial / "lengths.npy").write_bytes(b"x")
    tmp_file = store.run_dir(acts.key) / f".meta.json.{'a' * 32}.tmp"
    tmp_file.write_text("{}")
    tmp_dir = next((store.root / "results").iterdir()) / f"{'b' * 20}.{'c' * 32}.tmp"
    tmp_dir.mkdir()
    _age(tmp_file)
    _age(tmp_dir)

    report = verify(store)
    assert _whats(report) == [ORPHAN] * 3
    assert "interrupted extraction" in next(p.reason for p in report.problems if p.path.endswith(".partial"))

    repaired = verify(store, repair=True)
    assert all(p.repaired and p.moved_to.startswith("damaged/") for p in repaired.problems)
    assert not partial.exists() and not tmp_file.exists() and not tmp_dir.exists()
    reliability("stale .partial folders and .tmp files: listed as orphans and moved aside", 3,
                int(not verify(store).clean))
    assert verify(store).clean
    store.open_run(acts.key)  # the healthy run was not touched


def test_verify__young_tmp_file_is_left_to_its_writer(workspace):
    store, acts = workspace
    (store.run_dir(acts.key) / f".meta.json.{'a' * 32}.tmp").write_text("{}")
    assert verify(store).clean
    assert [p.path for p in verify(store, min_age_s=0).problems if p.what == ORPHAN] == [
        f"runs/{acts.key}/.meta.json.{'a' * 32}.tmp"]


def test_verify__unheld_lock_is_stale_and_removed_held_lock_and_its_partial_are_not(workspace):
    store, _ = workspace
    locks = store.root / "locks"
    stale, held = locks / "stale.lock", locks / "busy.lock"
    stale.write_text("")
    held.write_text("")
    _age(stale)
    _age(held)
    busy_partial = store.partial_dir("busy")
    busy_partial.mkdir()
    with open(held) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # a running extraction of key "busy"
        report = verify(store)
        assert [(p.what, p.path) for p in report.problems] == [(STALE_LOCK, "locks/stale.lock")]
        assert report.in_progress == ["runs/busy.partial"]
        assert verify(store, repair=True).problems[0].repaired
        assert not stale.exists() and held.exists() and busy_partial.exists()
    assert main(["verify", "--workspace", str(store.root)]) == 1  # the orphaned partial fails, not the lock
    assert {p.path for p in verify(store).problems} == {"runs/busy.partial", "locks/busy.lock"}


def test_verify__an_unheld_lock_alone_is_listed_but_does_not_fail(workspace, capsys):
    store, _ = workspace
    lock = store.root / "locks" / "finished.lock"
    lock.write_text("")
    _age(lock)
    assert main(["verify", "--workspace", str(store.root)]) == 0
    assert "stale lock: locks/finished.lock" in capsys.readouterr().out


def test_verify__json_report_and_bad_input(workspace, capsys, tmp_path):
    import json

    store, _ = workspace
    assert main(["verify", "--json", "--workspace", str(store.root)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] and report["checked"] == 2
    assert main(["verify", "--workspace", str(tmp_path / "absent")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["verify", "--min-age", "-1", "--workspace", str(store.root)]) == 2
    assert "min_age_s=-1.0 must be" in capsys.readouterr().err
    assert DAMAGED == "damaged"
