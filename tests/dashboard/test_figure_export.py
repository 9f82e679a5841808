"""Export controls on the pages (AppTest) and the Export page: every chart can be exported and rebuilt."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core
from core import export

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
EXPORT_PAGE = str(ROOT / "dashboard" / "views" / "export.py")
TIMEOUT = 240


@pytest.fixture(scope="module")
def small_workspace(tmp_path_factory, minilm):
    """60 real sentences through minilm (mean pooling): fast probes, maps and geometry."""
    store = core.Store(tmp_path_factory.mktemp("export-dashboard-ws"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), pooling="mean", store=store)
    return store


@pytest.fixture()
def small_env(small_workspace, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_WORKSPACE", str(small_workspace.root))
    return small_workspace


def page(path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_probes_and_explorer__every_chart_has_an_export_control(small_env):
    for path, charts in (("views/probes.py", 2), ("views/explorer.py", 1)):
        at = page(path)
        assert len(at.get("plotly_chart")) == charts
        downloads = [b.label for b in at.get("download_button")]
        assert downloads.count("Download PNG") == charts and downloads.count("Sidecar (JSON)") == charts
        formats = [s for s in at.selectbox if s.label == "Format"]
        assert len(formats) == charts and formats[0].options == ["PNG", "SVG", "PDF", "HTML (interactive)",
                                                                 "CSV (data)", "Parquet (data)", "All formats (.zip)"]
        assert any(c.label == "Publication style" and c.value for c in at.checkbox)


@pytest.mark.slow
def test_pages__chart_on_screen_equals_the_figure_rebuilt_from_its_spec(small_env):
    """What a sidecar regenerates is what the page showed (the charts' traces, compared as JSON)."""
    run = small_env.list_runs()[0]["key"]
    at = page("views/probes.py")
    shown = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    title = "minilm on demo:sentences: probing topic"
    rebuilt = export.build_figure(export.figure_spec("probe_curve", [run], column="topic", title=title), small_env)
    assert shown == json.loads(rebuilt.figure.to_json())["data"]
    at = page("views/explorer.py")
    shown = json.loads(at.get("plotly_chart")[0].proto.spec)
    spec = export.figure_spec("layer_map", [run], layer="embeddings", method="pca", color_by="topic",
                              title=shown["layout"]["title"]["text"], search="", selected=None, k=10)
    assert shown["data"] == json.loads(export.build_figure(spec, small_env).figure.to_json())["data"]


@pytest.mark.slow
def test_prepared_export__download_bytes_and_a_sidecar_saved_in_the_workspace(small_env):
    from dashboard.figure_export import PreparedExport

    run = small_env.list_runs()[0]["key"]
    spec = export.figure_spec("probe_curve", [run], column="sentiment")
    fig = export.build_figure(spec, small_env).figure
    prepared = PreparedExport(fig, name="probe-sentiment", spec=spec, data=None)
    csv = prepared.download("csv", publication=True, scale=2).decode()
    assert csv.splitlines()[0].startswith("layer,metric,mean,std")  # the probe's table, not raw traces
    saved = small_env.root / "exports" / "figures"
    sidecar = export.read_sidecar(saved / "probe-sentiment.json")
    assert sidecar["files"]["csv"]["path"] == "probe-sentiment.csv" and sidecar["analysis"]["metric"] == "accuracy"
    assert json.loads(prepared.sidecar(publication=False, scale=3))["style"]["png_scale"] == 3
    html = prepared.download("html", publication=True, scale=2)
    assert html.startswith(b"<html>") or html.lower().startswith(b"<!doctype html") or b"<html" in html[:200]
    archive = zipfile.ZipFile(io.BytesIO(prepared.download("zip", publication=True, scale=1)))
    names = set(archive.namelist())
    assert {"probe-sentiment/probe-sentiment.json", "probe-sentiment/probe-sentiment.html",
            "probe-sentiment/probe-sentiment.parquet"} <= names


def test_export_page__refuses_a_folder_outside_exports(small_env):
    at = AppTest.from_file(EXPORT_PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    at.text_input[0].set_value("../../outside").run()
    next(b for b in at.button if b.label == "Export report").click().run()
    assert not at.exception
    assert any("'..' is not allowed" in e.value for e in at.error)
    assert not (small_env.root.parent / "outside").exists()


@pytest.mark.slow
def test_export_page__writes_the_report_and_offers_the_zip(small_env):
    at = AppTest.from_file(EXPORT_PAGE, default_timeout=TIMEOUT)
    at.run()
    next(b for b in at.button if b.label == "Export report").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Wrote" in s.value for s in at.success)
    folder = small_env.root / "exports" / "report"
    manifest = json.loads((folder / "report.json").read_text())
    assert len(manifest["figures"]) >= 8 and (folder.parent / "report.zip").is_file()
    assert any(b.label.startswith("Download report.zip") for b in at.get("download_button"))
