"""`python -m core steer ...` on a real smollm2 run; an encoder is refused with exit 2."""

from __future__ import annotations

import json

import pytest

import core
from core.cli import main

LAYERS = ["model.layers.10", "model.layers.20"]  # as test_steer.py, so the session's run is shared


@pytest.fixture(scope="module")
def run_key(smollm2, session_store):
    return core.extract(smollm2, core.load_dataset("demo:sentences", limit=80), layers=LAYERS, pooling="mean",
                        store=session_store).key


@pytest.mark.slow
def test_steer_json(run_key, session_store, capsys):
    assert main(["steer", "--model", "smollm2", "--run", run_key, "--layer", "model.layers.10", "--label", "sentiment",
                 "--positive", "positive", "--prompt", "The food was", "--prompt", "My day was", "--alphas=-1,0,1",
                 "--max-new-tokens", "3", "--top-k", "4", "--readout", "sentiment:positive", "--json",
                 "--workspace", str(session_store.root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["alphas"] == [-1.0, 0.0, 1.0]
    assert len(result["continuations"]) == 3 and len(result["continuations"][0]) == 2
    assert result["kl"][1] == [0.0, 0.0] and min(result["kl"][0] + result["kl"][2]) > 0
    assert len(result["gained_tokens"][2]) == 4
    assert result["readout_layers"] == LAYERS and len(result["readout"]) == 3
    assert result["direction_key"] and result["params"]["readout"]["run"] == run_key


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "minilm", "--direction", "any", "--prompt", "hi"], "steering needs a causal LM; minilm is an encoder"),
        (["--model", "minilm", "--direction", "any"], "give at least one --prompt"),
        (["--model", "minilm", "--direction", "any", "--prompt", "hi", "--alphas", "1,x"], "--alphas '1,x' must be"),
    ],
)
def test_steer_bad_input_exits_2(argv, message, session_store, capsys):
    assert main(["steer", *argv, "--workspace", str(session_store.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
