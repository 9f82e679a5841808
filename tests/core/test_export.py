"""core.export: valid PNG/SVG/PDF/HTML files, sidecars that regenerate the same figure, safe paths, no browser."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import core
from core import export
from core.errors import LayerscopeError
from core.figures.style import ACCENT, PALETTE
from core.report import regenerate

HAS_BROWSER = export.browser_path() is not None
needs_browser = pytest.mark.skipif(not HAS_BROWSER, reason="no Chrome/Chromium (make setup installs Debian's)")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, minilm):
    """60 real sentences through minilm (mean pooling) in a fresh workspace."""
    store = core.Store(tmp_path_factory.mktemp("export-ws"))
    acts = core.extract(minilm, core.load_dataset("demo:sentences", limit=60), pooling="mean", store=store)
    return store, acts


def probe_spec(acts):
    return export.figure_spec("probe_curve", [acts.key], column="topic", title="probing topic")


def trace_json(fig: go.Figure) -> str:
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(fig.to_plotly_json()["data"], cls=PlotlyJSONEncoder, sort_keys=True)


def svg_texts(data: bytes) -> list[str]:
    return ["".join(node.itertext()) for node in ET.fromstring(data).iter() if node.tag.endswith("text")]


# ----- static images -----------------------------------------------------------------------------
@pytest.mark.slow
@needs_browser
def test_png_svg_pdf__valid_files_with_axis_titles(small_run):
    store, acts = small_run
    fig = export.build_figure(probe_spec(acts), store).figure
    png, _ = export.figure_bytes(fig, "png", scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    width, height = struct.unpack(">II", png[16:24])  # IHDR: pixels = figure size x scale
    assert (width, height) == tuple(2 * v for v in export.image_size(fig))
    svg, _ = export.figure_bytes(fig, "svg")
    texts = svg_texts(svg)  # parses as XML
    assert "layer (0 = first extracted layer)" in texts and "held-out accuracy (5-fold CV)" in texts
    assert "probing topic" in texts
    pdf, _ = export.figure_bytes(fig, "pdf")
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-1024:] and len(pdf) > 5_000


@pytest.mark.slow
@needs_browser
def test_renderer__kept_alive_between_images_and_restarts_after_close(small_run):
    store, acts = small_run
    fig = export.build_figure(probe_spec(acts), store).figure
    renderer = export.ImageRenderer()
    try:
        first = renderer.render(fig, "svg", width=600, height=400)
        assert renderer.running
        second = renderer.render(fig, "svg", width=600, height=400)  # clip-path ids differ between renders
        assert second.startswith(b"<svg") and abs(len(second) - len(first)) < 100
        renderer.close()
        assert not renderer.running
        assert renderer.render(fig, "png", width=600, height=400)[:4] == b"\x89PNG"
    finally:
        renderer.close()


# ----- HTML ----------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_browser
def test_html__standalone_and_shows_the_plot_in_headless_chromium(small_run, tmp_path):
    from playwright.sync_api import sync_playwright

    store, acts = small_run
    fig = export.build_figure(probe_spec(acts), store).figure
    page_bytes, _ = export.figure_bytes(fig, "html", publication=True)
    text = page_bytes.decode()
    assert 'src="http' not in text and len(text) > 1_000_000  # plotly.js inline: no CDN, works offline
    assert '"displayModeBar": false' in text  # publication style: no toolbar
    path = tmp_path / "probe.html"
    path.write_bytes(page_bytes)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=export.browser_path(), args=args)
        page = browser.new_page()
        page.goto(path.as_uri())
        page.wait_for_selector(".main-svg", timeout=30_000)
        assert page.locator(".gtitle", has_text="probing topic").count() == 1
        assert page.locator(".xtitle", has_text="first extracted layer").count() == 1
        assert page.locator(".scatterlayer .trace").count() >= 4
        browser.close()


# ----- sidecars and regeneration ------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind",
    ["layer_map", "animated_layer_map", "probe_curve", "geometry_curves", "similarity_heatmap", "probe_depth_curves"],
)
def test_sidecar__regenerated_figure_equals_the_original_data(small_run, tmp_path, kind):
    store, acts = small_run
    specs = {
        "layer_map": export.figure_spec("layer_map", [acts.key], layer="encoder.layer.3", color_by="topic",
                                        search="rain", selected=4, k=5),
        "animated_layer_map": export.figure_spec("animated_layer_map", [acts.key], color_by="sentiment"),
        "probe_curve": probe_spec(acts),
        "geometry_curves": export.figure_spec(
            "geometry_curves", [acts.key], metric="intrinsic_dimension",
            curves=[{"name": "minilm", "run": acts.key, "metrics": ["intrinsic_dimension"], "options": {}}]),
        "similarity_heatmap": export.figure_spec("similarity_heatmap", [acts.key, acts.key], metric="linear_cka"),
        "probe_depth_curves": export.figure_spec("probe_depth_curves", [acts.key, acts.key], column="topic",
                                                 names=["A", "B"]),
    }
    built = export.build_figure(specs[kind], store)
    sidecar = export.export_figure(built.figure, tmp_path, name=kind, spec=specs[kind], store=store,
                                   formats=("html", "csv", "parquet"), table=built.table, analysis=built.analysis)
    again = export.build_figure(json.loads((tmp_path / f"{kind}.json").read_text())["spec"], store)
    assert trace_json(again.figure) == trace_json(built.figure)
    assert sidecar["data_sha256"] == export.data_fingerprint(again.figure)
    assert set(sidecar["files"]) == {"html", "csv", "parquet"}
    for entry in sidecar["files"].values():
        assert (tmp_path / entry["path"]).stat().st_size == entry["bytes"] > 0


def test_sidecar__holds_provenance(small_run, tmp_path):
    store, acts = small_run
    built = export.build_figure(probe_spec(acts), store)
    export.export_figure(built.figure, tmp_path, name="probe", spec=probe_spec(acts), store=store, formats=("csv",),
                         table=built.table, analysis=built.analysis, caption=built.caption)
    sidecar = export.read_sidecar(tmp_path / "probe.json")
    run = sidecar["runs"][0]
    assert run["model"]["name"] == "minilm" and run["model"]["weights"] == acts.meta["model"]["weights"]
    assert run["dataset"]["fingerprint"] == acts.meta["dataset"]["fingerprint"] and run["dataset"]["n_inputs"] == 60
    assert run["layers"] == acts.layer_names and run["pooling"] == "mean"
    assert sidecar["analysis"]["metric"] == "accuracy" and sidecar["analysis"]["seeds"] == {"folds_and_control": 0}
    assert sidecar["analysis"]["parameters"]["n_folds"] == 5
    assert sidecar["layerscope_version"] == core.__version__ and sidecar["created"].startswith("20")
    assert sidecar["spec"]["figure"] == "probe_curve" and sidecar["regenerable"]
    table = pd.read_csv(tmp_path / "probe.csv")
    assert list(table["layer"]) == acts.layer_names and table["mean"].between(0, 1).all()


@pytest.mark.slow
def test_regenerate__other_version_warns_and_missing_run_is_extracted_again(small_run, tmp_path, minilm):
    store, acts = small_run
    built = export.build_figure(probe_spec(acts), store)
    export.export_figure(built.figure, tmp_path, name="probe", spec=probe_spec(acts), store=store, formats=("csv",))
    sidecar = json.loads((tmp_path / "probe.json").read_text())
    sidecar["layerscope_version"] = "0.0.1"
    (tmp_path / "probe.json").write_text(json.dumps(sidecar))
    fresh = core.Store(tmp_path / "other-workspace")  # the run is not there: minilm on demo:sentences[:60] again
    done = regenerate(tmp_path / "probe.json", fresh, load_model=lambda name: minilm)
    assert done.matches and (done.folder / "probe.csv").is_file()
    assert any("0.0.1" in w for w in done.warnings)
    assert fresh.has_run(acts.key)


def test_regenerate__says_what_cannot_be_regenerated(small_run, tmp_path, minilm):
    store, acts = small_run
    built = export.build_figure(probe_spec(acts), store)
    export.export_figure(built.figure, tmp_path, name="probe", spec=probe_spec(acts), store=store, formats=("csv",))
    sidecar = json.loads((tmp_path / "probe.json").read_text())
    sidecar["runs"][0]["dataset"]["fingerprint"] = "0" * 20  # data that cannot be found again
    (tmp_path / "probe.json").write_text(json.dumps(sidecar))
    with pytest.raises(LayerscopeError, match="cannot be extracted again: dataset 'demo:sentences' has changed"):
        regenerate(tmp_path / "probe.json", core.Store(tmp_path / "empty"), load_model=lambda name: minilm)
    with pytest.raises(LayerscopeError, match="not in the workspace"):
        regenerate(tmp_path / "probe.json", core.Store(tmp_path / "empty"), extract_missing=False)
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(LayerscopeError, match="not a Layerscope figure sidecar"):
        regenerate(tmp_path / "bad.json", store)
    with pytest.raises(LayerscopeError, match="figure='nope' is not a figure"):
        export.build_figure({"figure": "nope", "runs": [], "params": {}}, store)
    with pytest.raises(LayerscopeError, match="unexpected keyword argument 'colour'"):
        export.build_figure(export.figure_spec("probe_curve", [acts.key], column="topic", colour="red"), store)


# ----- style ------------------------------------------------------------------------------------
def test_publication_style__applied_to_a_copy_only(small_run):
    store, acts = small_run
    fig = export.build_figure(probe_spec(acts), store).figure
    before = fig.to_json()
    styled = export.publication_style(fig)
    assert fig.to_json() == before  # the on-screen figure keeps its style
    assert styled.layout.plot_bgcolor == "white" and styled.layout.font.size == 16
    assert styled.layout.title.text == fig.layout.title.text
    assert styled.layout.xaxis.title.text == fig.layout.xaxis.title.text
    probe = next(t for t in styled.data if (t.name or "").startswith("linear probe"))
    assert probe.line.color.lower() == PALETTE[0].lower() and ACCENT not in styled.to_json()
    assert export.data_fingerprint(fig) == export.data_fingerprint(export.build_figure(probe_spec(acts), store).figure)


# ----- large figures ----------------------------------------------------------------------------
def big_map(n: int = 120_000) -> go.Figure:
    rng = np.random.default_rng(0)
    fig = go.Figure(go.Scattergl(x=rng.normal(size=n), y=rng.normal(size=n), mode="markers", name="inputs",
                                 customdata=np.arange(n)))
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="selected"))
    fig.update_layout(title="big", xaxis_title="PC 1", yaxis_title="PC 2")
    return fig


def test_large_figure__vector_formats_downsampled_with_a_note_png_and_html_keep_every_point():
    fig = big_map()
    svg, note = export.static_figure(fig, "svg")
    points = sum(len(t.x) for t in svg.data)
    assert points <= export.VECTOR_MAX_POINTS + 1 and {t.type for t in svg.data} == {"scatter"}
    assert note["downsampled"]["from_points"] == 120_001 and note["downsampled"]["to_points"] == points
    assert len(svg.data[1].x) == 1  # small traces (selection, highlights) are kept whole
    assert len(svg.data[0].customdata) == len(svg.data[0].x)
    png, note = export.static_figure(fig, "png")
    assert note is None and len(png.data[0].x) == 120_000 and png.data[0].type == "scattergl"
    assert len(export.figure_table(fig)) == 120_001


@pytest.mark.slow
@needs_browser
def test_large_figure__svg_export_writes_the_note_in_the_sidecar(tmp_path):
    sidecar = export.export_figure(big_map(), tmp_path, name="big", formats=("svg", "png"))
    assert sidecar["notes"]["svg"]["downsampled"]["from_points"] == 120_001 and "png" not in sidecar["notes"]
    assert "PC 1" in svg_texts((tmp_path / "big.svg").read_bytes())


# ----- bad input --------------------------------------------------------------------------------
def test_missing_browser__images_say_so_and_html_csv_parquet_still_work(small_run, tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chromium"))
    store, acts = small_run
    fig = export.build_figure(probe_spec(acts), store).figure
    assert "BROWSER_PATH" in export.images_unavailable_reason()
    with pytest.raises(export.BrowserMissingError, match="HTML, CSV and Parquet exports still work"):
        export.figure_bytes(fig, "png", image_renderer=export.ImageRenderer())
    sidecar = export.export_figure(fig, tmp_path / "out", name="probe", formats=("png", "html", "csv", "parquet"),
                                   image_renderer=export.ImageRenderer())
    assert set(sidecar["files"]) == {"html", "csv", "parquet"} and "Chromium" in sidecar["skipped"]["png"]
    assert not (tmp_path / "out" / "probe.png").exists()


def test_safe_child__refuses_names_that_leave_the_folder(tmp_path):
    root = tmp_path / "exports"
    root.mkdir()
    assert export.safe_child(root, "paper/fig1") == root / "paper" / "fig1"
    for bad, message in [("../outside", "'..' is not allowed"), ("/etc", "absolute path"), ("a/../../b", "'..'"),
                         ("", "empty")]:
        with pytest.raises(LayerscopeError, match=message):
            export.safe_child(root, bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(LayerscopeError, match="symbolic link"):
        export.safe_child(root, "link/x")
    store = core.Store(tmp_path / "ws")
    assert export.export_folder(store, "paper") == store.root / "exports" / "paper"
    with pytest.raises(LayerscopeError, match="'..' is not allowed"):
        export.export_folder(store, "../../etc")


def test_unwritable_output__clear_error_nothing_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fig = big_map(10)
    with pytest.raises(LayerscopeError, match="exists and is not a folder"):
        export.export_figure(fig, blocker, name="f", formats=("csv",))
    with pytest.raises(LayerscopeError, match="cannot write to"):
        export.export_figure(fig, blocker / "sub", name="f", formats=("csv",))
    with pytest.raises(LayerscopeError, match="format='gif' is not supported"):
        export.export_figure(fig, tmp_path / "ok", name="f", formats=("gif",))


def test_figure_table__heatmap_cells_and_scatter_points():
    heat = go.Figure(go.Heatmap(z=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], x=["a", "b", "c"], y=["r0", "r1"]))
    table = export.figure_table(heat)
    assert len(table) == 6 and table.loc[(table.x == "c") & (table.y == "r1"), "z"].item() == 6.0
    scatter = export.figure_table(big_map(5))
    assert list(scatter["trace_name"]) == ["inputs"] * 5 + ["selected"] and "customdata_0" in scatter
    assert export.table_bytes(scatter, "parquet")[:4] == b"PAR1"


def test_report_and_export_names__slugged():
    assert export.slug("minilm · encoder.layer.3 / topic?") == "minilm-encoder.layer.3-topic"
    assert export.slug("../../") == "figure"
