"""SIGKILL before every write of an SAE entry, a figure export (`python -m core figure --from`) and a report.

Kill points come from tests/core/fault_helpers.py: each write of the entry's own life (its folder,
its temporary siblings, the final renames; not locks or other results), in order, until the job
ends. After each kill: `verify` finds nothing damaged and nothing incomplete looks complete (an SAE
entry, a sidecar listing files that are not there, a report folder without all its files); then the
same request runs to the end over the leftovers and equals a fresh run made elsewhere (SAE training
has no on-disk checkpoint: it trains again, to the same weights), and its output is removed so the
next kill lands in an unfinished job again. At the end `verify --repair` moves the leftovers aside.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import torch
from fault_helpers import FaultDriver

import core
from core import export
from core.analysis.sae import SAEConfig
from core.analysis.sae.entries import SAE_KIND, has_sae, open_sae, sae_key
from core.store import Store
from core.verify import DAMAGED, ORPHAN, verify

pytestmark = pytest.mark.slow

LAYER = "encoder.layer.3"
TINY = {"expansion": 1.0, "k": 4, "batch_size": 32, "training_tokens": 64, "held_out_fraction": 0.25}  # 2 steps
MAX_WRITES = 80  # far more than any of these jobs makes: a job that never ends fails the test


@pytest.fixture(scope="module")
def driver() -> Iterator[FaultDriver]:
    """One driver process for the three jobs (Layerscope imported once)."""
    started = FaultDriver()
    yield started
    started.close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, minilm, driver) -> tuple[Store, str]:
    """A workspace with a minilm tokens run of 12 demo sentences (two layers), its key."""
    store = Store(tmp_path_factory.mktemp("kill_sae_export") / "workspace")
    acts = core.extract(minilm, core.load_dataset("demo:sentences", limit=12), layers=["embeddings", LAYER],
                        pooling="tokens", store=store)
    return store, acts.key


def _no_damage(store: Store) -> None:
    assert [p.line() for p in verify(store, min_age_s=0).problems if p.what == DAMAGED] == []


def _kill_before_every_write(driver: FaultDriver, after_kill: Callable[[int], None],
                             after_finish: Callable[[int], None], note: Callable[[int, int], None]) -> int:
    """Kill the job before its 1st, 2nd, ... write until a try ends on its own; returns the writes it makes.

    After each kill: `after_kill(k)`, then the same request once more to the end and `after_finish(k)`
    (which compares it with the fresh run and removes the finished output). `note(kills, lost)` records
    the kills made and whether one of them lost something (a check after it failed).
    """
    for k in range(1, MAX_WRITES):
        outcome = driver.run(k)
        if not outcome.killed:
            note(k - 1, 0)
            assert (outcome.code, outcome.writes) == (0, k - 1)
            return k - 1
        try:
            after_kill(k)
            assert driver.run(0).code == 0
            after_finish(k)
        except AssertionError:
            note(k, 1)
            raise
    raise AssertionError(f"the job still wrote after {MAX_WRITES} writes")


def test_sae_entry__killed_before_each_write_never_looks_complete_and_trains_again_to_the_same_weights(
        workspace, driver, tmp_path, reliability):
    store, run = workspace
    key = sae_key(run, LAYER, SAEConfig(**TINY))
    fresh = Store(tmp_path / "fresh")
    driver.prepare("sae", {"workspace": str(store.root), "runs_from": str(store.root), "run": run, "layer": LAYER,
                           "config": TINY}, watch=[store.entry_dir(SAE_KIND, key)],
                   warm_up={"workspace": str(fresh.root)})
    reference = open_sae(fresh, key).sae.state_dict()

    def same_as_fresh() -> None:
        weights = open_sae(store, key).sae.state_dict()
        assert sorted(weights) == sorted(reference)
        for name, value in reference.items():
            torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6)

    def after_kill(k: int) -> None:
        _no_damage(store)
        if has_sae(store, key):  # killed after the rename: complete and readable
            open_sae(store, key)

    def after_finish(k: int) -> None:
        same_as_fresh()
        store.delete_entry(SAE_KIND, key)

    note = partial(reliability, "SIGKILL before each write of an SAE entry")
    writes = _kill_before_every_write(driver, after_kill, after_finish, note)
    assert writes >= 7  # folder, cfg.json, weights, curves, meta.json + rename, folder rename
    same_as_fresh()
    repaired = verify(store, repair=True, min_age_s=0)
    assert repaired.count(ORPHAN) >= 1  # the temporary folders of the killed writers
    assert not verify(store, min_age_s=0).failed


def _sidecar_complete(sidecar: Path) -> None:
    """A sidecar that exists lists only files that are there, with its checksums."""
    if not sidecar.is_file():
        return
    data = json.loads(sidecar.read_text())
    for fmt, info in data["files"].items():
        path = sidecar.parent / info["path"]
        assert path.is_file(), fmt
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], fmt


def _same_figure(sidecar: Path, reference: Path) -> None:
    """Two sidecars of the same figure: complete, the same data and byte-identical files."""
    _sidecar_complete(sidecar)
    ours, theirs = json.loads(sidecar.read_text()), json.loads(reference.read_text())
    assert ours["data_sha256"] == theirs["data_sha256"]
    assert {f: i["sha256"] for f, i in ours["files"].items()} == {f: i["sha256"] for f, i in theirs["files"].items()}


def test_figure_export__killed_before_each_write_leaves_no_sidecar_naming_missing_files(
        workspace, driver, tmp_path, reliability):
    store, run = workspace
    spec = export.figure_spec("similarity_heatmap", [run, run], metric="linear_cka")
    built = export.build_figure(spec, store)  # the similarity is computed (and stored) here, once
    source = tmp_path / "source"
    export.export_figure(built.figure, source, name="similarity", spec=spec, store=store, formats=("csv",),
                         table=built.table, analysis=built.analysis, publication=False)  # regenerated alike: cheaper
    out, fresh = store.root / "exports" / "regenerated", tmp_path / "fresh"

    def argv(folder: Path) -> list[str]:
        return ["figure", "--from", str(source / "similarity.json"), "--out", str(folder), "--formats", "csv,parquet",
                "--workspace", str(store.root)]

    driver.prepare("cli", {"workspace": str(store.root), "argv": argv(out)}, watch=[out],
                   warm_up={"argv": argv(fresh)})

    def after_kill(k: int) -> None:
        _no_damage(store)
        _sidecar_complete(out / "similarity.json")

    def after_finish(k: int) -> None:
        _same_figure(out / "similarity.json", fresh / "similarity.json")
        sidecar = json.loads((out / "similarity.json").read_text())
        for info in sidecar["files"].values():
            (out / info["path"]).unlink()
        (out / "similarity.json").unlink()

    note = partial(reliability, "SIGKILL before each write of a figure export")
    writes = _kill_before_every_write(driver, after_kill, after_finish, note)
    assert writes >= 9  # folder, write test + its removal, old sidecar, 2 files + renames, sidecar + rename
    assert driver.run(0).code == 0  # and once more over a complete export
    _same_figure(out / "similarity.json", fresh / "similarity.json")
    assert json.loads((out / "similarity.json").read_text())["data_sha256"] == \
        json.loads((source / "similarity.json").read_text())["data_sha256"]
    leftovers = verify(store, repair=True, min_age_s=0)
    assert any(p.path.startswith("exports/regenerated/") for p in leftovers.problems)  # killed writes' temp files
    assert not verify(store, min_age_s=0).failed
    assert sorted(p.name for p in out.iterdir()) == ["similarity.csv", "similarity.json", "similarity.parquet"]


def _report_complete(out: Path) -> dict:
    """The manifest of a report folder, after checking every file it names is there."""
    manifest = json.loads((out / "report.json").read_text())
    assert (out / "index.html").is_file()
    for figure in manifest["figures"]:
        _sidecar_complete(out / figure["sidecar"])
        assert all((out / f).is_file() for f in figure["files"].values())
    return manifest


def test_report__killed_before_each_write_is_complete_or_absent(workspace, driver, tmp_path, reliability):
    store, run = workspace
    specs = [export.figure_spec("similarity_heatmap", [run, run], metric="linear_cka")]
    export.build_figure(specs[0], store)  # computed and stored now, not in each try
    out, fresh = store.root / "exports" / "reports" / "report", tmp_path / "fresh" / "report"
    zipped = out.with_name("report.zip")
    driver.prepare("report", {"workspace": str(store.root), "out": str(out), "specs": specs, "formats": [],
                              "tables": ["csv"], "publication": False},
                   watch=[out, out.with_name(".report.zip")],  # the folder, its temp siblings, the zip and its temp
                   warm_up={"out": str(fresh)})
    reference = _report_complete(fresh)

    def after_kill(k: int) -> None:
        _no_damage(store)
        if out.exists():  # only ever renamed into place complete
            _report_complete(out)
        assert not zipped.exists() or out.exists()

    def after_finish(k: int) -> None:
        manifest = _report_complete(out)
        assert [f["name"] for f in manifest["figures"]] == [f["name"] for f in reference["figures"]]
        for figure in manifest["figures"]:
            _same_figure(out / figure["sidecar"], fresh / figure["sidecar"])
        assert zipped.is_file()
        shutil.rmtree(out)
        zipped.unlink()

    note = partial(reliability, "SIGKILL before each write of a report")
    writes = _kill_before_every_write(driver, after_kill, after_finish, note)
    assert writes >= 10  # folder, figures/, write test, csv + sidecar and renames, index, report.json, zip, renames
    manifest = _report_complete(out)
    assert len(manifest["figures"]) == 1 and zipped.is_file()
    assert all(sorted(figure["files"]) == ["csv"] for figure in manifest["figures"])
    leftovers = verify(store, repair=True, min_age_s=0)
    assert any(p.path.startswith("exports/reports/") for p in leftovers.problems)  # killed tries' folders
    assert not verify(store, min_age_s=0).failed
    assert sorted(p.name for p in out.parent.iterdir()) == ["report", "report.zip"]
