"""Hostile code: nothing a user hands in runs code on load unless they say so, and the server stays local."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

import core
from core.atomic import file_sha256
from core.errors import LayerscopeError

ROOT = Path(__file__).resolve().parents[2]


class WritesMarker:
    """Unpickling this writes a marker file: the proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


CODE = "remote code, pickled checkpoints and object-dtype .npy files: refused, nothing ran"

def _remote_code_folder(folder: Path, marker: Path) -> Path:
    """A model folder whose config.json asks transformers to import the folder's own .py files."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "marker", "architectures": ["MarkerModel"],
        "auto_map": {"AutoConfig": "configuration_marker.MarkerConfig", "AutoModel": "modeling_marker.MarkerModel"},
    }))
    code = (f"from pathlib import Path\nPath({str(marker)!r}).write_text('code ran')\n"
            "from transformers import PretrainedConfig\nclass MarkerConfig(PretrainedConfig):\n    model_type = 'marker'\n")
    (folder / "configuration_marker.py").write_text(code)
    (folder / "modeling_marker.py").write_text(code.replace("MarkerConfig(PretrainedConfig)", "MarkerModel"))
    return folder


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_remote_code__refused_without_trust_and_nothing_runs(tmp_path, reliability):
    marker = tmp_path / "marker"
    folder = _remote_code_folder(tmp_path / "model", marker)
    with pytest.raises(LayerscopeError, match="ships its own code.*--trust-remote-code"):
        core.load_model(str(folder))
    reliability(CODE, 1, int(marker.exists()))
    assert not marker.exists()


@pytest.mark.slow
def test_remote_code__cli_exits_2_without_trust_and_runs_it_only_with_trust(tmp_path, reliability):
    marker = tmp_path / "marker"
    folder = _remote_code_folder(tmp_path / "model", marker)
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}
    args = ("extract", "--model", str(folder), "--data", "demo:words", "--workspace", str(tmp_path / "ws"))
    refused = _cli(*args, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    reliability(CODE, 1, int(marker.exists()))
    assert "--trust-remote-code" in refused.stderr and not marker.exists()
    _cli(*args, "--trust-remote-code", env=env)  # the user said so: the folder's code is imported
    assert marker.read_text() == "code ran"


def test_pickled_checkpoint__refused_and_never_unpickled(tmp_path, reliability):
    from transformers import BertConfig

    marker = tmp_path / "marker"
    folder = tmp_path / "model"
    BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=16).save_pretrained(folder)
    torch.save({"bert.embeddings.word_embeddings.weight": WritesMarker(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(LayerscopeError, match="pickled checkpoint"):
        core.load_model(str(folder))
    reliability(CODE, 1, int(marker.exists()))
    assert not marker.exists()


def test_core_never_unpickles():
    """Every torch.load in core/ passes weights_only=True; no np.load or np.save allows pickles."""
    unsafe = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                unsafe.append(f"{path.name}: {call}")
        unsafe += [f"{path.name}: {m}" for m in re.findall(r"allow_pickle\s*=\s*True|pickle\.loads?\(", text)]
        unsafe += [f"{path.name}: np.load without allow_pickle=False"
                   for call in re.findall(r"np\.load\([^)]*\)", text) if "allow_pickle=False" not in call]
    assert unsafe == []


def _swap_in_object_array(folder: Path, rel: str, marker: Path) -> None:
    """Replace a stored .npy with a pickled object array and re-sign it, as a deliberate tamper would."""
    np.save(folder / rel, np.array([WritesMarker(marker)], dtype=object), allow_pickle=True)
    meta = json.loads((folder / "meta.json").read_text())
    meta["checksums"][rel] = file_sha256(folder / rel)
    (folder / "meta.json").write_text(json.dumps(meta))


def test_object_npy_in_a_result__refused_moved_aside_and_never_unpickled(store, tmp_path, reliability):
    marker = tmp_path / "marker"
    params = {"what": "hostile-code-test"}
    folder = store.save_result("test_kind", params, {"values": np.arange(4.0)})
    _swap_in_object_array(folder, "values.npy", marker)
    assert store.load_result("test_kind", params) is None  # read as damaged: the next request recomputes
    reliability(CODE, 1, int(marker.exists()))
    assert not folder.exists() and not marker.exists()


@pytest.mark.slow  # trains digits-mlp when the session has not yet
def test_object_npy_in_a_run__refused_with_a_message_and_never_unpickled(store, session_store, tmp_path,
                                                                         reliability):
    marker = tmp_path / "marker"
    model = core.load_model("digits-mlp", workspace=session_store.root, device="cpu")  # trained once per session
    dataset = core.load_dataset("demo:digits", limit=16)
    acts = core.extract(model, dataset, layers="all", pooling="mean", store=store)
    _swap_in_object_array(acts.path, "layers/001.npy", marker)  # the second layer's array
    reopened = store.open_run(acts.key)
    with pytest.raises(LayerscopeError, match="not a plain numeric array"):
        reopened[reopened.layer_names[1]]
    reliability(CODE, 1, int(marker.exists()))
    assert not marker.exists()


def test_server__binds_to_localhost_unless_told_otherwise():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, re.MULTILINE)  # `make run HOST=0.0.0.0` overrides it
    assert "--server.address $(HOST)" in makefile
