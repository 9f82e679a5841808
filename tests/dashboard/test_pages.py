"""Every page through Streamlit's AppTest: widgets, buttons, figures, no exceptions."""

from __future__ import annotations

import shutil
from pathlib import Path

from apptest_helpers import figures, values
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT = 240


def app_at(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_home__lists_bundled_models_and_datasets(workspace_env):
    at = app_at()
    assert at.metric[0].value == str(len(workspace_env.list_runs()))  # the workspace is shared: another test may add one
    frames = [df.value for df in at.dataframe]
    assert "smollm2" in frames[0]["name"].tolist() and "demo:cities" in frames[1]["name"].tolist()


def test_home__empty_workspace_says_what_to_do(empty_workspace_env):
    at = app_at()
    assert at.metric[0].value == "0"
    assert any("no runs yet" in i.value for i in at.info)


def test_workspace__extract_a_run(workspace_env):
    at = app_at("views/workspace.py")
    pooling = next(s for s in at.selectbox if s.label == "Pooling")
    pooling.set_value("first").run()
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Stored run" in s.value for s in at.success)
    runs = workspace_env.list_runs()
    assert {r["pooling"] for r in runs} >= {"mean", "first"}


def test_workspace__missing_file_is_an_error_not_a_traceback(workspace_env):
    at = app_at("views/workspace.py")
    at.radio[0].set_value("File or folder path").run()
    at.text_input[0].set_value("/no/such/file.csv").run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_explorer__pca_map_coloured_by_topic(workspace_env):
    at = app_at("views/explorer.py")
    specs = figures(at)
    assert len(specs) == 1
    traces = specs[0]["data"]
    assert {t["name"] for t in traces} == {"finance", "food", "health", "sports", "technology", "weather"}
    assert sum(len(values(t["x"])) for t in traces) == 864
    assert specs[0]["layout"]["xaxis"]["title"]["text"] == "PC 1"
    assert 0.5 < float(at.metric[0].value) <= 1.0
    at.text_input[0].set_value("rain").run()
    assert any(t["name"].startswith("matches") for t in figures(at)[0]["data"])
    at.select_slider[0].set_value("encoder.layer.5").run()
    assert not at.exception and "encoder.layer.5" in figures(at)[0]["layout"]["title"]["text"]


def test_explorer__umap_shows_pca_while_it_is_coming(workspace_env):
    at = app_at("views/explorer.py")
    at.radio[0].set_value("UMAP").run()
    assert not at.exception
    assert figures(at), "a map is shown at once"


def test_probes__curves_with_chance_and_control(workspace_env):
    at = app_at("views/probes.py")
    specs = figures(at)
    assert len(specs) == 2  # topic and sentiment
    names = [t.get("name", "") for t in specs[0]["data"]]
    assert any(n.startswith("chance") for n in names) and "control (shuffled labels)" in names
    probe = next(t for t in specs[0]["data"] if t.get("name", "").startswith("linear probe"))
    assert len(values(probe["y"])) == 7 and values(probe["y"]).max() > 0.8


def test_pages__empty_workspace_show_info_not_errors(empty_workspace_env):
    for page in ("views/workspace.py", "views/explorer.py", "views/probes.py"):
        at = app_at(page)
        assert not at.error


def test_pages__deleted_run_files_show_an_error(tmp_path, monkeypatch, demo_workspace):
    copy = tmp_path / "ws"
    shutil.copytree(demo_workspace.root, copy)
    for run in (copy / "runs").iterdir():  # every run, so whichever the page opens is damaged
        shutil.rmtree(run / "layers")
    monkeypatch.setenv("LAYERSCOPE_WORKSPACE", str(copy))
    for page in ("views/explorer.py", "views/probes.py"):
        at = app_at(page)
        assert any("Re-extract" in e.value for e in at.error)
