"""The command line, run as a user would: subprocesses, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args, workspace):
    return subprocess.run(
        [sys.executable, "-m", "core", *args, "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )


def test_cli__extract_then_ls(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nthe cat sat on the mat,a\nmarkets fell sharply today,b\nit rained all week,a\n")
    done = run_cli("extract", "--model", "minilm", "--data", str(data), "--pooling", "mean", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["shape"] == [3, 384] and len(summary["layers"]) == 7
    listed = run_cli("ls", "--json", workspace=tmp_path / "ws")
    rows = json.loads(listed.stdout)
    assert [r["key"] for r in rows] == [summary["key"]] and rows[0]["dataset"] == str(data)
    plain = run_cli("ls", workspace=tmp_path / "ws")
    assert summary["key"] in plain.stdout and "minilm" in plain.stdout and str(tmp_path) not in plain.stdout
    assert "d.csv" in plain.stdout  # the file's name, not its path


def test_cli__extract_names_the_run_and_ls_shows_it(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\nthe cat sat on the mat,a\nmarkets fell sharply today,b\n")
    args = ("extract", "--model", "minilm", "--data", str(data), "--layers", "embeddings", "--json")
    done = run_cli(*args, "--name", "baseline run", workspace=tmp_path / "ws")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "baseline run"
    rows = json.loads(run_cli("ls", "--json", workspace=tmp_path / "ws").stdout)
    assert [(r["name"], r["dataset_name"]) for r in rows] == [("baseline run", "reviews.csv")]
    renamed = run_cli(*args, "--name", "second look", workspace=tmp_path / "ws")  # same run: renamed, not re-extracted
    assert json.loads(renamed.stdout)["key"] == rows[0]["key"]
    assert [r["name"] for r in json.loads(run_cli("ls", "--json", workspace=tmp_path / "ws").stdout)] == ["second look"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract", "--model", "nope", "--data", "demo:sentences"], "model 'nope'"),
        (["extract", "--model", "minilm", "--data", "missing.csv"], "dataset 'missing.csv' does not exist"),
        (["extract", "--model", "minilm", "--data", "demo:words", "--layers", "encoder.layer.77"], "'encoder.layer.77'"),
        (["extract", "--model", "minilm", "--data", "demo:words", "--pooling", "avg"], "pooling='avg'"),
        (["extract", "--model", "minilm", "--data", "demo:words", "--label-columns", "topic"], "label column 'topic'"),
        (["extract", "--model", "minilm", "--data", "demo:words", "--name", "a\tb" * 50], "must be one line of at most 80"),
    ],
)
def test_cli__bad_input_exits_2_without_traceback(tmp_path, args, message):
    done = run_cli(*args, workspace=tmp_path / "ws")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ws" / "runs").exists()
