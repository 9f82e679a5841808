"""A full disk (ENOSPC) during an extraction, a result write and an export, on a size-limited tmpfs.

Each gets one message naming the folder (the workspace) and the space needed, leaves nothing
damaged looking complete, and the same request succeeds once the filler file is deleted.
Needs root to mount the tmpfs; skipped otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import core
from core import export
from core.analysis.similarity import similarity_matrix
from core.cli import main
from core.diskspace import DiskFullError
from core.models.bundled import digits_mlp_weights
from core.store import Store
from core.verify import DAMAGED, verify

pytestmark = pytest.mark.slow

SIZE_MB = 6  # a digits-mlp run on demo:digits takes 3.4 MB
FULL = "ENOSPC during an extraction, a result write and an export: one message, then works once space is freed"


@pytest.fixture(scope="module")
def digits_weights() -> Path:
    return digits_mlp_weights(0)  # trained once into the default workspace, copied into each tmpfs


@pytest.fixture()
def tmpfs(tmp_path, digits_weights) -> Iterator[Store]:
    """A workspace on a fresh SIZE_MB tmpfs holding digits-mlp's weights; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}M", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        store = Store(mount / "workspace")
        store.models_dir.mkdir(parents=True)
        shutil.copy(digits_weights, store.models_dir / digits_weights.name)
        yield store
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave: int = 0) -> Path:
    """A file in `folder` that fills its filesystem, leaving about `leave` bytes free (0: full)."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as handle:
        try:
            while shutil.disk_usage(folder).free > leave:
                handle.write(b"\0" * min(1 << 16, max(4096, shutil.disk_usage(folder).free - leave)))
                handle.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def _nothing_damaged(store: Store) -> None:
    assert [p.line() for p in verify(store, min_age_s=0).problems if p.what == DAMAGED] == []


def test_extract__full_disk_says_where_and_how_much_and_resumes_once_space_is_freed(tmpfs, capsys, reliability):
    argv = ["extract", "--model", "digits-mlp", "--data", "demo:digits", "--batch-size", "256", "--device", "cpu",
            "--workspace", str(tmpfs.root)]
    filler = _fill(tmpfs.root, leave=1_500_000)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()  # after the progress bar
    assert [line for line in err.splitlines() if "error" in line] == [err.splitlines()[-1]] and "Traceback" not in err
    assert f"the workspace {tmpfs.root}" in err and "needs about" in err and "free" in err
    assert tmpfs.list_runs() == []  # the interrupted run stays .partial, resumed below
    _nothing_damaged(tmpfs)
    filler.unlink()
    assert main(argv) == 0
    runs = tmpfs.list_runs()
    assert len(runs) == 1 and runs[0]["n_inputs"] == 1797
    damaged = verify(tmpfs, min_age_s=0).failed
    reliability(FULL, 1, int(damaged))
    assert not damaged


def test_result_write__full_disk_raises_one_clear_error_and_stores_nothing_then_succeeds(tmpfs, reliability):
    acts = core.extract(core.load_model("digits-mlp", device="cpu", workspace=tmpfs.root),
                        core.load_dataset("demo:digits", limit=300), layers=["fc1", "logits"], store=tmpfs)
    filler = _fill(tmpfs.root)
    with pytest.raises(DiskFullError, match=f"the workspace {tmpfs.root}.*needs about"):
        similarity_matrix(acts, acts, "linear_cka", store=tmpfs)
    assert tmpfs.list_entries("similarity") == []
    _nothing_damaged(tmpfs)
    filler.unlink()
    stored = similarity_matrix(acts, acts, "linear_cka", store=tmpfs)
    assert len(tmpfs.list_entries("similarity")) == 1
    np.testing.assert_allclose(stored.matrix, similarity_matrix(acts, acts, "linear_cka").matrix, rtol=1e-6)
    damaged = verify(tmpfs, min_age_s=0).failed
    reliability(FULL, 1, int(damaged))
    assert not damaged


def test_export__full_disk_leaves_no_sidecar_and_names_the_bytes_needed(tmpfs, tmp_path, capsys, reliability):
    acts = core.extract(core.load_model("digits-mlp", device="cpu", workspace=tmpfs.root),
                        core.load_dataset("demo:digits", limit=300), layers=["fc1", "logits"], store=tmpfs)
    spec = export.figure_spec("similarity_heatmap", [acts.key, acts.key], metric="linear_cka")
    built = export.build_figure(spec, tmpfs)
    export.export_figure(built.figure, tmp_path / "source", name="cka", spec=spec, store=tmpfs, formats=("csv",),
                         table=built.table, analysis=built.analysis)
    out = tmpfs.root / "exports" / "cka"
    argv = ["figure", "--from", str(tmp_path / "source" / "cka.json"), "--out", str(out), "--formats", "csv,html",
            "--workspace", str(tmpfs.root)]
    filler = _fill(tmpfs.root, leave=500_000)  # the standalone HTML (plotly.js inline) takes about 4.7 MB
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"no space left in {out}" in err and "cka.html" in err and "needs about 4." in err
    assert not (out / "cka.json").exists() and not (out / "cka.html").exists()
    filler.unlink()
    assert main(argv) == 0
    assert sorted(json.loads((out / "cka.json").read_text())["files"]) == ["csv", "html"]
    damaged = verify(tmpfs, min_age_s=0).failed
    reliability(FULL, 1, int(damaged))
    assert not damaged

