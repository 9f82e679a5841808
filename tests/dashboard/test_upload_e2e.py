"""End to end: a CSV uploaded through the Workspace page keeps its file name in pickers, titles and exports."""

from __future__ import annotations

import json
import re

import pytest

import core

pytest.importorskip("playwright")
from browser_helpers import PLOT, WAIT, assert_no_exception, chart_titles, wait_until_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

FILE_NAME = "my_reviews.csv"
RUN_NAME = "reviews baseline"
GOOD = ["the food was wonderful", "friendly staff and quick service", "a lovely quiet evening", "great value"]
BAD = ["the soup was cold", "we waited an hour", "rude staff at the door", "overpriced and bland"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, minilm):
    """Runs that differ by pooling or weights only, beside which the upload must still be told apart."""
    from core.runs import extract_twin

    store = core.Store(tmp_path_factory.mktemp("upload-e2e-ws"))
    sentences = core.load_dataset("demo:sentences", limit=40)
    for pooling in ("tokens", "mean"):
        acts = core.extract(minilm, sentences, pooling=pooling, store=store)
    extract_twin(acts, store)
    return store


@pytest.fixture(scope="module")
def server(workspace, streamlit_server):
    return streamlit_server(workspace.root)


def _reviews(folder):
    rows = [(f"{text} on visit {i}", sentiment) for i in range(5)
            for texts, sentiment in ((GOOD, "positive"), (BAD, "negative")) for text in texts]
    path = folder / FILE_NAME
    path.write_text("review,sentiment\n" + "".join(f"{text},{sentiment}\n" for text, sentiment in rows))
    return path, len(rows)


def test_upload__file_name_reaches_the_run_picker_titles_and_the_sidecar(server, browser, workspace, tmp_path):
    csv, n_rows = _reviews(tmp_path)
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page.goto(f"{server}/workspace")
    page.wait_for_selector("text=New extraction", timeout=WAIT)
    wait_until_idle(page)
    page.locator('[data-testid="stRadio"]').get_by_text("Upload", exact=True).click()
    wait_until_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(csv))
    expect(page.get_by_text(f"{FILE_NAME}: {n_rows} rows")).to_be_visible(timeout=WAIT)
    wait_until_idle(page)
    name = page.get_by_label("Run name (optional)", exact=True).and_(page.locator("input"))
    name.fill(RUN_NAME)
    name.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Extract activations").click()
    label = f"{RUN_NAME} — minilm · {FILE_NAME} · mean-pooled · {n_rows} inputs"
    expect(page.get_by_text(f"Stored run {label}")).to_be_visible(timeout=WAIT)
    wait_until_idle(page)
    assert_no_exception(page)
    page.screenshot(path=tmp_path / "workspace.png", full_page=True)
    [run] = [r for r in workspace.list_runs() if r.get("name")]
    assert run["name"] == RUN_NAME and run["dataset"]["name"].endswith(f"/{FILE_NAME}")

    page.get_by_role("link", name="Open it in the layer explorer").click()
    page.wait_for_selector(PLOT, timeout=WAIT)
    wait_until_idle(page)
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input').first
    expect(picker).to_have_value(label)
    expect(page.locator('[data-testid="stSidebar"]').get_by_text(re.compile(f"^{re.escape(label)} · 7 layers"))
           ).to_be_visible()
    assert any(f"map of {FILE_NAME}" in title for title in chart_titles(page))
    picker.click()
    option = page.get_by_role("option", name=label)
    expect(option).to_be_visible()
    options = page.get_by_role("option").all_text_contents()
    assert len(options) == 4 and len(set(options)) == 4  # mean, per-token, untrained twin and the upload differ
    for text in options:  # each option shows its whole label (it wraps rather than being cut)
        shown = page.get_by_role("option", name=text, exact=True).locator("div").first
        assert shown.evaluate("e => e.scrollWidth <= e.clientWidth"), text
    page.screenshot(path=tmp_path / "explorer.png")
    page.keyboard.press("Escape")
    wait_until_idle(page)

    page.locator('[data-testid="stPopover"] button').first.click()
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name=re.compile("Sidecar")).first.click()
    info.value.save_as(tmp_path / "sidecar.json")
    sidecar = json.loads((tmp_path / "sidecar.json").read_text())
    assert FILE_NAME in sidecar["title"]
    assert sidecar["runs"][0]["key"] == run["key"] and sidecar["runs"][0]["dataset"]["name"].endswith(f"/{FILE_NAME}")
    assert_no_exception(page)
