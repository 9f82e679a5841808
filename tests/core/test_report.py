"""core.report: report folders with every figure listed in index.html, atomic writes, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import core
from core import export, report
from core.errors import LayerscopeError
from core.report import write as report_write

HAS_BROWSER = export.browser_path() is not None


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, minilm):
    """minilm and its untrained twin on 60 real sentences: every cross-run figure has a partner."""
    store = core.Store(tmp_path_factory.mktemp("report-ws"))
    data = core.load_dataset("demo:sentences", limit=60)
    trained = core.extract(minilm, data, pooling="mean", store=store)
    twin = core.extract(core.load_model("minilm", device="cpu", reinit=True, seed=0), data, pooling="mean", store=store)
    return store, trained, twin


def index_links(folder: Path) -> list[str]:
    return re.findall(r"(?:src|href)='([^']+)'", (folder / "index.html").read_text())


def test_plan__every_page_figure_for_the_runs(two_runs):
    store, trained, twin = two_runs
    kinds = [s["figure"] for s in report.plan_report(store, [trained.key, twin.key], max_maps=3)]
    assert kinds.count("layer_map") == 6 and kinds.count("probe_curve") == 4  # 3 maps, 2 labels, per run
    assert {"animated_layer_map", "geometry_curves", "similarity_heatmap", "probe_depth_curves"} <= set(kinds)
    assert "trajectory" not in kinds  # needs pooling="tokens"
    geometry = next(s for s in report.plan_report(store, [trained.key, twin.key]) if s["figure"] == "geometry_curves")
    assert geometry["params"]["metric"] == "intrinsic_dimension"  # curvature is per-token: not for mean runs
    assert geometry["params"]["controls"] == ["minilm (untrained, seed 0)"]


@pytest.mark.slow
def test_report__folder_holds_every_figure_listed_in_index_html(two_runs, tmp_path):
    store, trained, twin = two_runs
    specs = [s for s in report.plan_report(store, [trained.key, twin.key], max_maps=1)
             if s["figure"] != "animated_layer_map"]
    specs.append(export.figure_spec("probe_curve", [trained.key], column="no-such-label"))
    result = report.write_report(store, [trained.key, twin.key], tmp_path / "report", specs=specs,
                                 formats=("png", "svg", "html"))
    folder = tmp_path / "report"
    assert result.path == folder and result.zip_path == tmp_path / "report.zip"
    manifest = json.loads((folder / "report.json").read_text())
    assert len(manifest["figures"]) == len(specs) - 1 == len(result.figures)
    assert [d["reason"] for d in manifest["not_drawn"]] == [result.not_drawn[0]["reason"]]
    assert "no-such-label" in (folder / "index.html").read_text()  # "Not drawn" says which and why
    links = index_links(folder)
    assert links and all((folder / link).is_file() for link in links)
    for figure in manifest["figures"]:
        assert figure["sidecar"] in links and figure["files"]["html"] in links and figure["files"]["csv"] in links
        if HAS_BROWSER:
            assert figure["files"]["png"] in links and figure["files"]["svg"] in links
    sidecars = sorted(p.name for p in (folder / "figures").glob("*.json"))
    assert sidecars == sorted(Path(f["sidecar"]).name for f in manifest["figures"])
    with zipfile.ZipFile(result.zip_path) as archive:
        names = set(archive.namelist())
    assert {f"report/{p.relative_to(folder)}" for p in folder.rglob("*") if p.is_file()} == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "report.zip"]  # no temporary leftovers


def test_report__a_failure_midway_leaves_nothing_that_looks_complete(two_runs, tmp_path, monkeypatch):
    store, trained, _ = two_runs
    specs = report.plan_report(store, [trained.key], max_maps=2)[:3]
    calls = []
    real = report_write.export_figure

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(report_write, "export_figure", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(store, [trained.key], tmp_path / "report", specs=specs, formats=("html",))
    assert list(tmp_path.iterdir()) == []


def test_report__replaces_an_old_report_but_never_other_folders(two_runs, tmp_path):
    store, trained, _ = two_runs
    specs = report.plan_report(store, [trained.key], max_maps=1)[:1]
    first = report.write_report(store, [trained.key], tmp_path / "r", specs=specs, formats=("html",), make_zip=False)
    (first.path / "stale.txt").write_text("from the old report")
    second = report.write_report(store, [trained.key], tmp_path / "r", specs=specs, formats=("html",), make_zip=False)
    assert not (second.path / "stale.txt").exists() and (second.path / "report.json").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(LayerscopeError, match="not a Layerscope report"):
        report.write_report(store, [trained.key], mine, specs=specs, formats=("html",))
    assert (mine / "thesis.tex").read_text() == "precious"
    with pytest.raises(LayerscopeError, match="is not in the workspace"):
        report.write_report(store, ["0" * 20], tmp_path / "r2")


def test_regenerate__a_report_folder_figure_by_figure(two_runs, tmp_path):
    store, trained, twin = two_runs
    specs = [s for s in report.plan_report(store, [trained.key, twin.key], max_maps=1)
             if s["figure"] in ("layer_map", "similarity_heatmap")]
    report.write_report(store, [trained.key, twin.key], tmp_path / "r", specs=specs, formats=("html",),
                        make_zip=False)
    sidecars = report.find_sidecars(tmp_path / "r")
    assert len(sidecars) == len(specs)
    for path in sidecars:
        done = report.regenerate(path, store, formats=("csv",))
        assert done.matches and done.folder == path.parent / "regenerated"
    assert report.find_sidecars(tmp_path / "r") == sidecars  # regenerated copies are not picked up again


# ----- the command line ---------------------------------------------------------------------------
def run_cli(*args: str, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args, "--workspace", str(workspace)], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)


@pytest.mark.slow
def test_cli__report_then_figure_from_its_sidecar(tmp_path):
    ws = tmp_path / "ws"
    done = run_cli("report", "--model", "minilm", "--data", "demo:sentences", "--limit", "60", "--out",
                   str(tmp_path / "report"), workspace=ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "report: " in done.stdout
    manifest = json.loads((tmp_path / "report" / "report.json").read_text())
    kinds = {f["figure"] for f in manifest["figures"]}
    assert {"layer_map", "animated_layer_map", "probe_curve", "geometry_curves"} <= kinds
    assert (tmp_path / "report.zip").is_file()
    probe = next(f for f in manifest["figures"] if f["figure"] == "probe_curve")
    again = run_cli("figure", "--from", str(tmp_path / "report" / probe["sidecar"]), "--out", str(tmp_path / "again"),
                    workspace=ws)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "same data as the export" in again.stdout
    assert (tmp_path / "again" / Path(probe["sidecar"]).name).is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["figure", "--from", "missing.json"], "sidecar 'missing.json' does not exist"),
        (["report", "--run", "0" * 20, "--out", "r"], "is not in the workspace"),
        (["report", "--model", "minilm", "--out", "r"], "--model needs --data"),
        (["report", "--run", "x", "--out", "r", "--formats", "gif"], "format='gif' is not supported"),
    ],
)
def test_cli__bad_input_exits_2_without_traceback(tmp_path, args, message):
    done = run_cli(*args, workspace=tmp_path / "ws")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
