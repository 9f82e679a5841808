"""Hostile paths: export folders and uploads stay inside the workspace whatever name they are given."""

from __future__ import annotations

import os

import plotly.graph_objects as go
import pytest

from core.data.naming import UPLOADS_DIR, save_upload
from core.errors import LayerscopeError
from core.export import export_figure, export_folder, safe_child

PATHS = "export, report and upload names with .., absolute paths, symlinks out of the folder: kept inside"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../outside", "'..' is not allowed"),
        ("figures/../../outside", "'..' is not allowed"),
        ("..\\outside", "'..' is not allowed"),
        ("/etc", "absolute path"),
        ("C:\\Windows", "absolute path"),
        ("", "empty or invalid"),
        ("a\x00b", "empty or invalid"),
    ],
)
def test_safe_child__refuses_names_that_leave_the_folder(tmp_path, name, message, reliability):
    with pytest.raises(LayerscopeError, match=message):
        safe_child(tmp_path, name)
    reliability(PATHS, 1, 0)  # refused (else the line above fails)


def test_safe_child__refuses_a_symlink_out_of_the_folder(tmp_path, reliability):
    root, outside = tmp_path / "exports", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(LayerscopeError, match="symbolic link"):
        safe_child(root, "link/figures")
    reliability(PATHS, 1, 0)  # refused (else the line above fails)
    assert safe_child(root, "paper/figures") == root.resolve() / "paper" / "figures"


def test_export_folder__hostile_names_create_nothing_outside(store, tmp_path, reliability):
    for name in ("../escaped", str(tmp_path / "absolute"), "a/../../escaped"):
        with pytest.raises(LayerscopeError):
            export_folder(store, name)
    escaped = (store.root / "escaped").exists() or (tmp_path / "absolute").exists()
    reliability(PATHS, 3, int(escaped))
    assert not escaped
    assert sorted(os.listdir(tmp_path)) == ["workspace"]


def test_export_figure__a_hostile_figure_name_lands_inside_the_folder(tmp_path, reliability):
    folder = tmp_path / "exports" / "paper"
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    sidecar = export_figure(fig, folder, name="../../../etc/passwd", formats=("csv",))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    reliability(PATHS, 1, sum(p.parent != folder for p in written))
    assert written and all(p.parent == folder for p in written)
    assert sidecar["name"] == "etc-passwd"


@pytest.mark.parametrize(
    ("name", "kept_as"),
    [
        ("../../x.csv", "x.csv"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\windows\\x.csv", "x.csv"),
        ("a\x00b.csv", "a_b.csv"),
        ("line\nbreak.csv", "line_break.csv"),
        ("..", "upload"),
        ("C:\\Users\\me\\reviews.csv", "reviews.csv"),
    ],
)
def test_save_upload__any_file_name_lands_under_the_uploads_folder(store, name, kept_as, reliability):
    uploads = store.root / UPLOADS_DIR
    path = save_upload(uploads, name, b"text,label\nhello,a\n")
    reliability(PATHS, 1, int(path.resolve().parent.parent != uploads.resolve()))
    assert path.name == kept_as
    assert path.resolve().parent.parent == uploads.resolve()
    assert [p for p in store.root.rglob("*") if p.is_file()] == [path]
