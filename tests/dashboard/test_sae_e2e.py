"""End to end: the Feature gallery under `streamlit run` on 127.0.0.1, driven by headless Chromium (the system's).

The workspace holds a small minilm tokens run (150 demo sentences, one layer) and one tiny
TopK SAE trained on it (384 latents, 30 steps of 128 tokens). The test computes the feature
statistics from the page, opens a card with its "Open" button and waits for that card's
activation histogram.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("playwright")
from browser_helpers import PLOT, WAIT, assert_no_exception, chart_titles, wait_until_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

LAYER = "encoder.layer.3"
TINY = {"expansion": 1.0, "k": 8, "batch_size": 128, "training_tokens": 128 * 30, "lr": 2e-3, "dead_window": 1000}


@pytest.fixture(scope="module")
def sae_workspace(tmp_path_factory, minilm) -> Path:
    """A workspace with a minilm tokens run of 150 demo sentences and one tiny SAE trained on it."""
    import core
    from core.analysis.sae import SAEConfig, train_sae_on_run

    root = tmp_path_factory.mktemp("sae_e2e_ws")
    store = core.Store(root)
    acts = core.extract(minilm, core.load_dataset("demo:sentences", limit=150), layers=[LAYER], pooling="tokens",
                        store=store)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny SAE steps are faster on one thread on a busy machine
    try:
        train_sae_on_run(acts, LAYER, SAEConfig(**TINY), store=store, device="cpu")
    finally:
        torch.set_num_threads(before)
    return root


@pytest.fixture(scope="module")
def server(sae_workspace, streamlit_server):
    return streamlit_server(sae_workspace, OMP_NUM_THREADS="1")


def test_feature_gallery__compute_statistics_and_open_a_card(server, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{server}/sae_gallery")
    compute = page.get_by_role("button", name="Compute feature statistics")
    compute.wait_for(timeout=WAIT)
    assert_no_exception(page)
    compute.click()

    # the statistics pass ends in the same script run: the map, the full card and the grid of cards
    open_buttons = page.locator('[class*="st-key-open_"] button')
    open_buttons.first.wait_for(timeout=WAIT)
    page.wait_for_selector(PLOT, timeout=WAIT)
    assert_no_exception(page)
    assert open_buttons.count() >= 2
    assert any(t.startswith("Feature map: PCA") for t in chart_titles(page)), chart_titles(page)

    # the statistics are stored now; a fresh page load shows the gallery without the compute step (clicking
    # "Open" in the run that computed them leaves a stale copy of the page's widgets around while it reruns)
    wait_until_idle(page)
    page.reload()
    open_buttons.first.wait_for(timeout=WAIT)
    wait_until_idle(page)
    assert_no_exception(page)

    # open the second card (the first one is already shown in full)
    target = page.locator('[class*="st-key-open_"]').nth(1)
    feature = int(re.search(r"st-key-open_(\d+)", target.get_attribute("class")).group(1))
    open_buttons.nth(1).click()
    number = page.get_by_role("spinbutton", name="Open feature #")
    expect(number).to_have_value(str(feature), timeout=WAIT)
    # the full card is the column next to the map's (the one holding the "Open feature #" input)
    card = page.locator('[data-testid="stColumn"]').filter(has=number).locator(
        "xpath=following-sibling::div[@data-testid='stColumn'][1]")
    expect(card.get_by_text(f"Feature {feature} ·")).to_be_visible(timeout=WAIT)
    histogram = card.locator('[data-testid="stPlotlyChart"]').filter(
        has=page.locator(".gtitle", has_text=f"Feature {feature}: activations when active"))
    histogram.locator(".main-svg").first.wait_for(timeout=WAIT)
    histogram.scroll_into_view_if_needed()
    expect(histogram.locator(".bars .point path").first).to_be_attached()  # the histogram has bars
    wait_until_idle(page)
    assert_no_exception(page)
