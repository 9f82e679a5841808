"""AppTest tests of the Compare page on real minilm runs (40 demo sentences, mean pooling).

Each page runs under a small st.navigation entry registering PAGES (conftest's `page_app`).
The workspace is copied per test where a test adds runs to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import button, figures, values

import core
from core.store import Store

PAGES = ("compare.py", "workspace.py", "explorer.py", "probes.py", "home.py")


@pytest.fixture(scope="module")
def one_run_workspace(tmp_path_factory, minilm) -> Path:
    """A workspace with a single minilm run: nothing to compare it with yet."""
    root = tmp_path_factory.mktemp("compare_pages_ws")
    core.extract(minilm, core.load_dataset("demo:sentences", limit=40), layers="all", pooling="mean",
                 store=Store(root))
    return root


@pytest.fixture()
def workspace(one_run_workspace, tmp_path) -> Path:
    """A private copy of the one-run workspace (tests add runs to it)."""
    return Path(shutil.copytree(one_run_workspace, tmp_path / "ws"))


@pytest.fixture()
def app(page_app):
    return lambda workspace: page_app("compare.py", workspace, PAGES)


def _heatmap(at) -> dict:
    heatmaps = [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap"]
    assert heatmaps, f"no heatmap among {len(figures(at))} figures"
    return heatmaps[0]


def test_compare__empty_workspace_says_what_to_do(app, tmp_path):
    at = app(tmp_path / "empty")
    at.run()
    assert not at.exception
    assert at.info and "extract activations first" in at.info[0].value


def test_compare__a_lone_run_against_itself_has_a_unit_diagonal_and_offers_partners(app, workspace):
    at = app(workspace)
    at.run()
    assert not at.exception, at.exception
    assert any("Only one run uses these inputs" in info.value for info in at.info)
    z = values(_heatmap(at)["data"][0]["z"])
    assert z.shape == (7, 7)
    np.testing.assert_allclose(np.diag(z), 1.0, atol=1e-12)
    assert (z[~np.eye(7, dtype=bool)] < 1.0).all()
    assert any("compared with itself" in c.value for c in at.caption)
    labels = [b.label for b in at.button]
    assert "Extract the untrained twin of model A" in labels
    assert any(label.startswith("Extract smollm2 on demo:sentences") for label in labels)  # not model A again


def test_compare__one_click_twin_becomes_model_b(app, workspace):
    at = app(workspace)
    at.run()
    button(at, "Extract the untrained twin of model A", prefix=True).click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(Store(workspace).list_runs()) == 2
    heatmap = _heatmap(at)
    z = values(heatmap["data"][0]["z"])
    assert z.shape == (7, 7) and np.isfinite(z).all()
    assert z[-1, -1] < 0.95  # the trained last layer is not the untrained one
    assert "untrained" in heatmap["layout"]["title"]["text"]


def test_compare__extract_a_typed_model_folder_on_the_same_inputs(app, workspace, minilm, tmp_path):
    folder = tmp_path / "minilm-copy"
    minilm.module.save_pretrained(folder)
    minilm.tokenizer.save_pretrained(folder)
    at = app(workspace)
    at.run()
    at.radio(key="partner_source").set_value("Folder or hub id")
    at.run()
    at.text_input(key="partner_typed").input(str(folder))
    at.run()
    button(at, f"Extract {folder} on demo:sentences", prefix=True).click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    runs = Store(workspace).list_runs()
    assert sorted(r["model"]["name"] for r in runs) == sorted(["minilm", str(folder)])
    assert len({r["dataset"]["fingerprint"] for r in runs}) == 1  # the same inputs
    z = values(_heatmap(at)["data"][0]["z"])
    np.testing.assert_allclose(np.diag(z), 1.0, atol=1e-6)  # the same weights under another name


def test_compare__an_unknown_model_is_one_clear_error(app, workspace):
    at = app(workspace)
    at.run()
    at.radio(key="partner_source").set_value("Folder or hub id")
    at.run()
    assert button(at, "Extract ...", prefix=True).disabled  # nothing typed yet
    at.text_input(key="partner_typed").input("no/such-model-anywhere")
    at.run()
    button(at, "Extract no/such-model-anywhere", prefix=True).click()
    at.run()
    assert not at.exception
    assert at.error and "no/such-model-anywhere" in at.error[0].value
    assert not at.get("progress")  # no progress bar left behind
    assert len(Store(workspace).list_runs()) == 1  # nothing half-written


def test_compare__mutual_knn_with_k_above_n_explains_the_empty_cells(app, workspace):
    at = app(workspace)
    at.run()
    at.sidebar.selectbox[2].select("mutual_knn")
    at.run()
    at.sidebar.number_input[0].set_value(60)  # 40 inputs: k must be below n
    at.run()
    assert not at.exception, at.exception
    assert at.warning and "k=60" in at.warning[0].value and "n=40" in at.warning[0].value
