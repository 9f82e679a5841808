"""AppTest tests of the Train SAE, Feature gallery and Feature matching pages on a real minilm tokens run.

Each page runs under a small st.navigation entry registering PAGES (conftest's `page_app`). SAEs are tiny
(384 latents, a few dozen steps) so that a page run stays short.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

streamlit = pytest.importorskip("streamlit")

from apptest_helpers import button, figures

import core
from core.analysis.sae import SAEConfig, SparseAutoencoder, list_saes, save_saelens, train_sae_on_run
from core.store import Store

PAGES = ("sae_train.py", "sae_gallery.py", "sae_match.py", "workspace.py")
LAYER = "encoder.layer.3"
TINY = {"expansion": 1.0, "k": 8, "batch_size": 128, "training_tokens": 128 * 30, "lr": 2e-3, "dead_window": 1000}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny SAE steps are faster on one thread on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokens_workspace(tmp_path_factory, minilm) -> Path:
    """A workspace with a minilm tokens run (80 demo sentences, two layers) and two SAEs (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("sae_pages_ws")
    store = Store(root)
    acts = core.extract(minilm, core.load_dataset("demo:sentences", limit=80), layers=["encoder.layer.2", LAYER],
                        pooling="tokens", store=store)
    for seed in (0, 1):
        train_sae_on_run(acts, LAYER, SAEConfig(**TINY, seed=seed), store=store)
    return root


@pytest.fixture()
def app(page_app):
    """app(page, workspace) -> AppTest of that page (conftest's `page_app` with this module's PAGES)."""
    return lambda page, workspace: page_app(page, workspace, PAGES)


# ----- empty workspace ---------------------------------------------------------------------------
@pytest.mark.parametrize("page, words", [("sae_train.py", "Workspace page"), ("sae_gallery.py", "Train SAE page"),
                                         ("sae_match.py", "Train SAE page")])
def test_page__empty_workspace_says_what_to_do(app, tmp_path, page, words):
    at = app(page, tmp_path / "empty_workspace")
    at.run()
    assert not at.exception
    assert at.info and words in at.info[0].value


# ----- train -------------------------------------------------------------------------------------
def test_train__form_trains_and_lists_the_sae(app, tokens_workspace):
    at = app("sae_train.py", tokens_workspace)
    at.run()
    assert not at.exception
    before = len(list_saes(Store(tokens_workspace)))
    at.number_input(key="sae_expansion").set_value(1.0)
    at.number_input(key="sae_k").set_value(4)
    at.number_input(key="sae_batch").set_value(128)
    at.number_input(key="sae_tokens").set_value(128 * 20)
    at.number_input(key="sae_seed").set_value(7)
    button(at, "Train SAE").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.success and "held-out FVE" in at.success[0].value
    assert len(list_saes(Store(tokens_workspace))) == before + 1
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert any(t.startswith("Training ·") for t in titles), titles
    assert any("k=4" in str(v) for v in at.dataframe[0].value["SAE"])


def test_train__k_larger_than_width_and_narrow_width_are_refused(app, tokens_workspace):
    at = app("sae_train.py", tokens_workspace)
    at.run()
    at.number_input(key="sae_expansion").set_value(1.0)
    at.number_input(key="sae_k").set_value(1000)
    button(at, "Train SAE").click().run()
    assert not at.exception
    assert at.error and "k=1000 is larger than the width 384" in at.error[0].value
    at.number_input(key="sae_expansion").set_value(0.5)
    at.number_input(key="sae_k").set_value(8)
    button(at, "Train SAE").click().run()
    assert not at.exception
    assert at.error and "width smaller than d" in at.error[0].value


def test_train__pooled_run_is_refused_with_a_clear_message(app, tmp_path, minilm):
    root = tmp_path / "pooled_workspace"
    core.extract(minilm, core.load_dataset("demo:sentences", limit=20), layers=[LAYER], pooling="mean",
                 store=Store(root))
    at = app("sae_train.py", root)
    at.run()
    assert not at.exception and not at.error  # what to extract, not an error
    assert at.info and "pooling='tokens'" in at.info[0].value
    assert "python -m core extract --model minilm --data demo:sentences --pooling tokens" in at.info[0].value


def test_train__loads_an_saelens_folder_and_refuses_a_wrong_width(app, tokens_workspace, tmp_path):
    good = SparseAutoencoder(384, 64, architecture="standard")
    with torch.no_grad():
        good.W_enc.normal_(0, 0.05)
        good.W_dec.normal_(0, 0.05)
    good_folder = save_saelens(good, tmp_path / "good")
    wide_folder = save_saelens(SparseAutoencoder(768, 64, architecture="standard"), tmp_path / "wide")
    at = app("sae_train.py", tokens_workspace)
    at.run()
    at.selectbox(key="sae_layer").set_value(LAYER).run()
    at.text_input(key="sae_import_folder").set_value(str(wide_folder)).run()
    button(at, "Load SAELens SAE").click().run()
    assert not at.exception
    assert at.error and "d_in=768" in at.error[0].value and "384 wide" in at.error[0].value
    at.text_input(key="sae_import_folder").set_value(str(good_folder)).run()
    button(at, "Load SAELens SAE").click().run()
    assert not at.exception
    assert at.success and at.success[0].value.startswith("Loaded")
    assert any(m.get("source") == "imported" for m in list_saes(Store(tokens_workspace)))


# ----- gallery -------------------------------------------------------------------------------------
def test_gallery__computes_statistics_then_draws_map_and_cards(app, tokens_workspace):
    at = app("sae_gallery.py", tokens_workspace)
    at.run()
    assert not at.exception
    button(at, "Compute feature statistics").click().run()
    assert not at.exception
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert any(t.startswith("Feature map: PCA") for t in titles), titles
    assert sum("activations when active" in t for t in titles) >= 4  # the open card and the grid's cards
    assert any("by topic" in t for t in titles)  # label association on the open card
    html = "".join(m.value for m in at.markdown)
    assert "background: rgba(232,89,12," in html  # highlighted tokens

    at.sidebar.radio(key="gallery_sort").set_value("label_association").run()
    assert not at.exception
    at.sidebar.text_input(key="gallery_search").set_value("the").run()
    assert not at.exception
    at.number_input(key="gallery_open").set_value(3).run()
    assert not at.exception
    assert any(m.value.startswith("**Feature 3**") for m in at.markdown)


# ----- matching --------------------------------------------------------------------------------------
def test_match__pairs_two_saes_and_shows_cards_side_by_side(app, tokens_workspace):
    at = app("sae_match.py", tokens_workspace)
    at.run()
    assert not at.exception
    button(at, "Match features").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    assert "Mean paired correlation" in labels and "SVCCA of paired decoders" in labels
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert any(t.startswith("Paired feature correlations (tokens") for t in titles), titles
    assert at.dataframe and len(at.dataframe[0].value) > 0
    cards = [m.value for m in at.markdown if m.value.startswith(("**A · Feature", "**B · Feature"))]
    assert len(cards) == 2


def test_match__same_sae_twice_asks_for_two(app, tokens_workspace):
    at = app("sae_match.py", tokens_workspace)
    at.run()
    at.sidebar.selectbox(key="match_b").set_value(at.sidebar.selectbox(key="match_a").value).run()
    assert not at.exception
    assert at.warning and "two different SAEs" in at.warning[0].value


def test_match__lan2024_conventions_are_chosen_in_the_sidebar_and_named(app, tokens_workspace):
    at = app("sae_match.py", tokens_workspace)
    at.run()
    assert at.sidebar.selectbox(key="match_variant").value == "layerscope"
    at.sidebar.selectbox(key="match_variant").set_value("lan2024").run()
    button(at, "Match features").click().run()  # a matching of its own, beside the default one
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert any(t.startswith("Paired feature correlations (tokens") and t.endswith("· lan2024") for t in titles), titles
    assert any("Conventions: lan2024" in c.value for c in at.caption)
