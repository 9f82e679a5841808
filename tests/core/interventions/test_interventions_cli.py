"""`python -m core direction ...` and `python -m core erase ...` on a real minilm run."""

from __future__ import annotations

import json

import pytest
from safetensors.numpy import load_file

import core
from core.cli import main

LAYERS = ["encoder.layer.1", "encoder.layer.3", "encoder.layer.5"]


@pytest.fixture(scope="module")
def run_key(minilm, session_store):
    return core.extract(minilm, core.load_dataset("demo:sentences", limit=120), layers=LAYERS, pooling="mean",
                        store=session_store).key


def test_direction_make_ls_export(run_key, session_store, tmp_path, capsys):
    ws = ["--workspace", str(session_store.root)]
    assert main(["direction", "make", "--run", run_key, "--layer", "encoder.layer.3", "--label", "sentiment",
                 "--positive", "positive", "--negative", "negative", "--json", *ws]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["width"] == 384 and made["name"] == "sentiment: positive - negative @ encoder.layer.3"
    assert main(["direction", "ls", "--json", *ws]) == 0
    assert made["key"] in [d["key"] for d in json.loads(capsys.readouterr().out)]
    out = tmp_path / "sentiment.safetensors"
    assert main(["direction", "export", made["key"], "--out", str(out), *ws]) == 0
    assert load_file(str(out))["direction"].shape == (384,)


@pytest.mark.slow
def test_erase_json(run_key, session_store, capsys):
    assert main(["erase", "--run", run_key, "--layer", "encoder.layer.1", "--label", "topic", "--json",
                 "--workspace", str(session_store.root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["layer"] for row in result["layers"]] == ["encoder.layer.1"]
    assert result["layers"][0]["before"] > result["layers"][0]["after"]
    assert result["mean_squared_change"] <= result["mean_difference_change"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["erase", "--run", "nope", "--layer", "x", "--label", "topic"], "run 'nope' is not in the workspace"),
        (["erase", "--layer", "encoder.layer.9", "--label", "topic"], "layer 'encoder.layer.9' is not in run"),
        (["erase", "--layer", "encoder.layer.1", "--label", "colour"], "label='colour' is not a label column"),
        (["direction", "make", "--layer", "encoder.layer.1", "--label", "topic", "--positive", "pirates"],
         "positive='pirates' is not a class of label 'topic'"),
        (["direction", "export", "0000", "--out", "x.safetensors"], "direction '0000' is not in the workspace"),
    ],
)
def test_bad_input_exits_2_with_one_line(run_key, session_store, capsys, argv, message):
    if argv[0] == "erase" and "--run" not in argv or argv[:2] == ["direction", "make"]:
        argv = [*argv, "--run", run_key]
    assert main([*argv, "--workspace", str(session_store.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
