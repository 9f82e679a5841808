"""The Workspace page through AppTest: an upload keeps its name, runs are named and renamed, columns are checked."""

from __future__ import annotations

import pytest
from apptest_helpers import button
from streamlit.testing.v1 import AppTest

from core.data.naming import display_name
from core.store import Store
from dashboard import state, widgets

PAGES = ("workspace.py", "explorer.py", "probes.py")  # the Workspace page and the pages it links to
PICKER_PAGE = "from dashboard import widgets\nwidgets.run_picker()\n"
TIMEOUT = 240  # seconds per script run: the first one imports torch and transformers
REVIEWS = (b"review,sentiment\nthe food was great,positive\nawful slow service,negative\n"
           b"quite fine overall,positive\nnever again,negative\n")


def _upload(at, name: str, data: bytes):
    at.radio[0].set_value("Upload").run()
    at.file_uploader[0].set_value((name, data, "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _extract(page_app, workspace, name: str = ""):
    at = page_app("workspace.py", workspace, PAGES)
    _upload(at.run(), "my_reviews.csv", REVIEWS)
    at.text_input(key=state.Workspace.RUN_NAME).set_value(name)
    at.multiselect[1].set_value(["encoder.layer.0", "encoder.layer.1"])  # Layers: two are enough here
    button(at, "Extract activations").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _runs_table(at):
    return next(frame.value for frame in at.dataframe if frame.key == state.Workspace.RUNS_TABLE)


def test_upload__keeps_the_file_name_in_the_page_the_workspace_and_the_run(page_app, tmp_path):
    workspace = tmp_path / "ws"
    at = _extract(page_app, workspace, name="baseline")
    assert any("my_reviews.csv: 4 rows" in c.value for c in at.caption)
    assert [p.name for p in (workspace / "uploads").rglob("*.csv")] == ["my_reviews.csv"]
    assert any("baseline — minilm · my_reviews.csv · mean-pooled · 4 inputs" in s.value for s in at.success)
    [run] = Store(workspace).list_runs()
    assert run["name"] == "baseline" and display_name(run["dataset"]["name"]) == "my_reviews.csv"


def test_same_bytes_given_by_path__reuse_the_uploaded_run_and_say_so(page_app, tmp_path):
    workspace = tmp_path / "ws"
    at = _extract(page_app, workspace)
    copy = tmp_path / "reviews.csv"
    copy.write_bytes(REVIEWS)
    at.radio[0].set_value("File or folder path").run()
    at.text_input[0].set_value(str(copy)).run()
    at.multiselect[1].set_value(["encoder.layer.0", "encoder.layer.1"])
    button(at, "Extract activations").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("reviews.csv holds the same inputs as my_reviews.csv" in i.value for i in at.info)
    assert len(Store(workspace).list_runs()) == 1


def test_stored_runs__a_selected_run_is_renamed_and_every_picker_says_so(page_app, tmp_path):
    workspace = tmp_path / "ws"
    at = _extract(page_app, workspace)
    [run] = Store(workspace).list_runs()
    at.session_state[state.Workspace.RUNS_TABLE] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    table = _runs_table(at)
    assert table["dataset"].tolist() == ["my_reviews.csv"] and table["name"].tolist() == [""]
    at.text_input(key=state.Workspace.rename(run["key"])).set_value("reviews, seed 0")
    button(at, "Save name").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert Store(workspace).open_run(run["key"]).name == "reviews, seed 0"
    assert _runs_table(at)["name"].tolist() == ["reviews, seed 0"]
    assert any("reviews, seed 0 — minilm · my_reviews.csv" in s.value for s in at.success)

    other = AppTest.from_string(PICKER_PAGE, default_timeout=TIMEOUT).run()  # the picker every page shares
    assert not other.exception, [e.value for e in other.exception]
    label = "reviews, seed 0 — minilm · my_reviews.csv · mean-pooled · 4 inputs"
    assert other.sidebar.selectbox[0].options == [label]
    assert any("2 layers" in c.value and run["key"][:8] in c.value for c in other.sidebar.caption)


def test_stored_runs__a_name_too_long_is_an_error_and_the_name_stays(page_app, tmp_path):
    workspace = tmp_path / "ws"
    at = _extract(page_app, workspace, name="kept")
    [run] = Store(workspace).list_runs()
    at.session_state[state.Workspace.RUNS_TABLE] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    field = at.text_input(key=state.Workspace.rename(run["key"]))
    assert field.value == "kept"
    field.set_value("two\nlines")
    button(at, "Save name").click().run()
    assert not at.exception and any("one line" in e.value for e in at.error)
    assert Store(workspace).open_run(run["key"]).name == "kept"


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (b"sentiment,review\npositive,the food was great\nnegative,awful\n", "warning"),  # first column of text taken
        (b"score,stars\n1.5,3\n2.5,4\n", "error"),  # no column of text at all
    ],
)
def test_text_column__a_guess_is_said_and_none_is_an_error(page_app, tmp_path, data, shown):
    at = page_app("workspace.py", tmp_path / "ws", PAGES)
    _upload(at.run(), "labels_first.csv", data)
    if shown == "warning":
        assert any("no column named 'text'" in w.value and "'sentiment'" in w.value for w in at.warning)
        assert not at.error
    else:
        assert any("'labels_first.csv' has no column of text" in e.value and "score, stars" in e.value
                   for e in at.error)


def test_describe_run__what_tells_runs_apart_comes_first_and_in_full():
    base = {"key": "0123456789abcdef0123", "model": {"name": "minilm"}, "layers": ["a", "b"], "n_inputs": 864,
            "dataset": {"name": "/ws/uploads/3fa9c1d2e4b5a6f7/my_reviews.csv"}, "pooling": "mean"}
    per_token = {**base, "pooling": "tokens"}
    assert widgets.describe_run(base) == "minilm · my_reviews.csv · mean-pooled · 864 inputs"
    assert widgets.describe_run(per_token) == "minilm · my_reviews.csv · per-token · 864 inputs"
    assert widgets.describe_run({**base, "name": "baseline"}).startswith("baseline — minilm")
    assert widgets.run_details(base) == f"{widgets.describe_run(base)} · 2 layers · run 01234567"
    assert widgets.run_details(base, label=False) == "2 layers · run 01234567"
