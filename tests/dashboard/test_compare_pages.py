"""AppTest tests of the Compare page on real minilm runs (40 demo sentences).

Each page runs under a small st.navigation entry registering PAGES (conftest's `page_app`).
Workspaces are built once per module and copied per test where a test adds runs to them.
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
from dashboard import state

PAGES = ("compare.py", "workspace.py", "explorer.py", "probes.py", "home.py")
TWIN = "minilm (untrained, seed 0)"


def _extract(store: Store, model, *, pooling: str = "mean", dataset: str = "demo:sentences") -> str:
    return core.extract(model, core.load_dataset(dataset, limit=40), layers="all", pooling=pooling, store=store).key


@pytest.fixture(scope="module")
def one_run_workspace(tmp_path_factory, minilm) -> Path:
    """A workspace with a single minilm run: nothing to compare it with yet."""
    root = tmp_path_factory.mktemp("compare_pages_ws")
    _extract(Store(root), minilm)
    return root


@pytest.fixture(scope="module")
def mixed_workspace(tmp_path_factory, minilm) -> Path:
    """minilm mean and per-token, their untrained twins, a re-initialised seed-1 minilm, minilm on other inputs."""
    root = tmp_path_factory.mktemp("compare_mixed_ws")
    store = Store(root)
    twin = core.load_model("minilm", reinit=True, seed=0, device="cpu")
    seed1 = core.load_model("minilm", reinit=True, seed=1, device="cpu")
    for model, pooling in ((minilm, "tokens"), (twin, "tokens"), (seed1, "mean"), (twin, "mean")):
        _extract(store, model, pooling=pooling)
    _extract(store, minilm, dataset="demo:cities")
    _extract(store, minilm)  # the demo run (minilm, demo:sentences, mean): model A on a first visit
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


def _model_b(at):
    return at.sidebar.selectbox(key=state.Compare.MODEL_B)


def _run_key(workspace: Path, model: str, pooling: str = "mean") -> str:
    return next(r["key"] for r in Store(workspace).list_runs()
                if r["model"]["name"] == model and r["pooling"] == pooling and r["n_inputs"] == 40
                and r["dataset"]["name"] == "demo:sentences")


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def test_compare__empty_workspace_says_what_to_do(app, tmp_path):
    at = app(tmp_path / "empty")
    at.run()
    assert not at.exception
    assert at.info and "extract activations first" in at.info[0].value


def test_compare__a_lone_run_is_not_compared_with_itself_by_default(app, workspace):
    at = app(workspace)
    at.run()
    assert not at.exception, at.exception
    assert _model_b(at).value is None
    assert not [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap"]
    assert any("No other run is comparable with model A yet" in info.value for info in at.info)
    labels = [b.label for b in at.button]
    assert "Extract the untrained twin of minilm and compare" in labels
    assert any(label.startswith("Extract smollm2 on demo:sentences") for label in labels)  # not model A again

    _model_b(at).select(_run_key(workspace, "minilm"))  # model A itself, picked on purpose: a sanity check
    at.run()
    assert not at.exception, at.exception
    z = values(_heatmap(at)["data"][0]["z"])
    assert z.shape == (7, 7)
    np.testing.assert_allclose(np.diag(z), 1.0, atol=1e-12)
    assert (z[~np.eye(7, dtype=bool)] < 1.0).all()
    assert "compared with itself" in _captions(at)


def test_compare__one_click_twin_becomes_model_b(app, workspace):
    at = app(workspace)
    at.run()
    button(at, "Extract the untrained twin of minilm", prefix=True).click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(Store(workspace).list_runs()) == 2
    assert _model_b(at).value == _run_key(workspace, TWIN)
    heatmap = _heatmap(at)
    z = values(heatmap["data"][0]["z"])
    assert z.shape == (7, 7) and np.isfinite(z).all()
    assert z[-1, -1] < 0.95  # the trained last layer is not the untrained one
    assert "untrained" in heatmap["layout"]["title"]["text"]
    assert not at.get("progress")  # the extraction's bar is gone


def test_compare__the_twin_is_offered_with_another_run_on_the_same_inputs(app, workspace):
    store = Store(workspace)
    _extract(store, core.load_model("minilm", reinit=True, seed=1, device="cpu"))  # a partner, but not the twin
    at = app(workspace)
    at.run()
    assert not at.exception, at.exception
    assert _model_b(at).value == _run_key(workspace, "minilm (untrained, seed 1)")
    button(at, "Extract the untrained twin of minilm", prefix=True).click()
    at.run()
    assert not at.exception, at.exception
    assert len(store.list_runs()) == 3
    assert _model_b(at).value == _run_key(workspace, TWIN)
    assert "minilm vs minilm (untrained, seed 0)" in _heatmap(at)["layout"]["title"]["text"]


def test_compare__opens_on_two_models_and_chooses_a_stored_twin_in_one_click(app, mixed_workspace):
    at = app(mixed_workspace)
    at.run()
    assert not at.exception, at.exception
    model_a = at.sidebar.selectbox[0]
    assert model_a.value == _run_key(mixed_workspace, "minilm")
    assert _model_b(at).value == _run_key(mixed_workspace, TWIN)  # another model, never model A itself
    z = values(_heatmap(at)["data"][0]["z"])
    assert not np.allclose(np.diag(z), 1.0)

    _model_b(at).select(_run_key(mixed_workspace, "minilm (untrained, seed 1)"))
    at.run()
    assert "minilm vs minilm (untrained, seed 1)" in _heatmap(at)["layout"]["title"]["text"]
    button(at, "Compare with the untrained twin of minilm").click()  # the stored twin: no extraction
    at.run()
    assert not at.exception, at.exception
    assert _model_b(at).value == _run_key(mixed_workspace, TWIN)
    assert "Model B is the untrained twin of minilm" in _captions(at)


def test_compare__probe_curves_of_both_models_are_a_click_away(app, mixed_workspace):
    at = app(mixed_workspace)
    at.run()
    assert not [f for f in figures(at) if "Linear probe" in f["layout"]["title"]["text"]]
    button(at, "Compute the probe curves for topic").click()
    at.run()
    assert not at.exception, at.exception
    curves = [f for f in figures(at) if "Linear probe" in f["layout"]["title"]["text"]]
    assert curves and [t["name"] for t in curves[0]["data"]] == ["A: minilm", f"B: {TWIN}"]
    assert not at.get("progress")  # the bar is gone once the curves are drawn
    at.run()  # a rerun draws them again without a click
    assert [f for f in figures(at) if "Linear probe" in f["layout"]["title"]["text"]]


def test_compare__a_per_token_run_is_left_out_with_its_reason_until_pooled(app, mixed_workspace):
    at = app(mixed_workspace)
    at.run()
    tokens = _run_key(mixed_workspace, "minilm", "tokens")
    assert all("per-token" not in option for option in _model_b(at).options)
    captions = _captions(at)
    assert "3 runs left out: per-token vs mean (2), different inputs (1)" in captions
    assert "Pool per-token runs" in captions

    at.sidebar.checkbox(key=state.Compare.POOL_TOKENS).check()
    at.run()
    assert not at.exception, at.exception
    assert any("per-token" in option for option in _model_b(at).options)
    assert "1 run left out: different inputs (1)" in _captions(at)
    _model_b(at).select(tokens)
    at.run()
    assert not at.exception, at.exception
    z = values(_heatmap(at)["data"][0]["z"])
    assert np.diag(z).min() > 0.99  # minilm's mean pooling is the mean of its tokens
    assert "per-token minilm as each input's mean token vector" in _captions(at)


def test_compare__per_token_runs_tokenised_alike_compare_token_by_token(app, mixed_workspace):
    at = app(mixed_workspace)
    at.run()
    at.sidebar.selectbox[0].select(_run_key(mixed_workspace, "minilm", "tokens"))
    at.run()
    assert not at.exception, at.exception
    assert _model_b(at).value == _run_key(mixed_workspace, TWIN, "tokens")
    heatmap = _heatmap(at)
    assert "token rows" in heatmap["data"][0]["colorbar"]["title"]["text"]
    assert "one row per token" in _captions(at)
    assert "4 runs left out: mean vs per-token (3), different inputs (1)" in _captions(at)


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


def test_compare__mutual_knn_with_k_above_n_explains_the_empty_cells(app, mixed_workspace):
    at = app(mixed_workspace)
    at.run()
    at.sidebar.selectbox[2].select("mutual_knn")
    at.run()
    at.sidebar.number_input[0].set_value(60)  # 40 inputs: k must be below n
    at.run()
    assert not at.exception, at.exception
    assert at.warning and "k=60" in at.warning[0].value and "n=40" in at.warning[0].value


def test_compare__an_uploaded_dataset_is_named_by_its_file_name_everywhere(app, tmp_path, minilm):
    root = tmp_path / "ws"
    sentences = core.load_dataset("demo:sentences", limit=24)
    upload = root / "uploads" / "3fa9c0d1e2b4a6f8" / "my_reviews.csv"  # as the Workspace page keeps an upload
    upload.parent.mkdir(parents=True)
    sentences.table[["text", "topic"]].to_csv(upload, index=False)
    core.extract(minilm, core.load_dataset(str(upload)), layers="all", pooling="mean", store=Store(root))
    at = app(root)
    at.run()
    assert not at.exception, at.exception
    labels = [b.label for b in at.button]
    assert any(label.startswith("Extract smollm2 on my_reviews.csv (") for label in labels), labels
    button(at, "Extract the untrained twin of minilm", prefix=True).click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    title = _heatmap(at)["layout"]["title"]["text"]
    assert "on my_reviews.csv" in title
    shown = [title, *labels, *(b.label for b in at.button), *(e.label for e in at.expander),
             *(s.value for kind in ("caption", "info", "markdown", "metric") for s in at.get(kind)
               if isinstance(getattr(s, "value", None), str)),
             *(option for box in at.selectbox for option in box.options)]
    assert any("my_reviews.csv" in text for text in shown)
    leaked = [text for text in shown if "3fa9c0d1e2b4a6f8" in text or "uploads/" in text]
    assert not leaked, leaked
