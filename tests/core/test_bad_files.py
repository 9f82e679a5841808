"""Bad files, hand-picked: each loads as the file says or is refused with one line naming what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import core
from core.analysis.probes.labels import encode_classes
from core.analysis.sae.model import SparseAutoencoder
from core.analysis.sae.saelens import load_saelens, save_saelens
from core.data.naming import save_upload
from core.errors import LayerscopeError
from core.report import regenerate

ROOT = Path(__file__).resolve().parents[2]


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


TABLES = "hand-picked tables (encodings, BOM, ragged rows, 1 MB cells, NaN/inf/mixed labels, duplicate columns)"
OTHERS = "hand-picked image folders, SAELens folders, sidecars and uploads"


def _plain(value):
    """A label as compared here: missing values (NaN, None) as None."""
    return None if pd.isna(value) else value


# ----- tables that load: what they load as -----------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "texts", "labels"),
    [
        ("bom.csv", "\ufefftext,label\nhello,a\nworld,b\n".encode(), ["hello", "world"], ["a", "b"]),
        ("utf16.csv", "text,label\ncafé,a\nnaïve,b\n".encode("utf-16"), ["café", "naïve"], ["a", "b"]),
        ("utf16.jsonl", '{"text": "café", "label": 1}\n'.encode("utf-16"), ["café"], [1]),
        ("big.csv", "text,label\n" + "x" * 2**20 + ",a\nhi,b\n", ["x" * 2**20, "hi"], ["a", "b"]),
        ("short_row.csv", "text,label\nhello\nworld,b\n", ["hello", "world"], [np.nan, "b"]),
        ("nan.csv", "text,label\nhello,\nworld,b\n", ["hello", "world"], [np.nan, "b"]),
        ("inf.csv", "text,label\nhello,inf\nworld,1\n", ["hello", "world"], [np.inf, 1.0]),
        ("mixed.jsonl", '{"text":"a","label":1}\n{"text":"b","label":"x"}\n{"text":"c","label":null}\n',
         ["a", "b", "c"], [1, "x", None]),
        ("numbers_as_text.jsonl", '{"text":"123","label":"7"}\n{"text":"007","label":"8"}\n', ["123", "007"], ["7", "8"]),
        ("dup.csv", "text,label,label\nhello,a,b\nworld,c,d\n", ["hello", "world"], ["a", "c"]),
    ],
)
def test_table__loads_as_the_file_says(tmp_path, name, content, texts, labels, reliability):
    dataset = core.load_dataset(_write(tmp_path, name, content))
    reliability(TABLES, 1, int(dataset.texts != texts))
    assert dataset.texts == texts
    assert [_plain(v) for v in dataset.table["label"]] == [_plain(v) for v in labels]
    if name == "dup.csv":  # a repeated CSV header keeps both columns, the second under pandas' ".1" suffix
        assert dataset.label_columns == ("label", "label.1") and dataset.table["label.1"].tolist() == ["b", "d"]


# ----- tables that are refused: one message naming the value --------------------------------
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("latin1.csv", "text,label\ncafé,a\n".encode("latin-1"), r"is not UTF-8 text \(byte 0xe9 at position 14\)"),
        ("latin1.tsv", "text\tlabel\ncafé\ta\n".encode("latin-1"), "is not UTF-8 text"),
        ("ragged.csv", "text,label\nhello,a,extra\nworld,b\n", "more fields than its header"),
        ("ragged_later.csv", "text,label\nhello,a\nworld,b,c\n", "Expected 2 fields in line 3, saw 3"),
        ("zero.csv", "text,label\n", "is empty; it needs at least one row"),
        ("nothing.csv", "", "No columns to parse"),
        ("no_text.csv", "a,b\n1,2\n", "has no column of text"),
        ("nan_text.csv", "text,label\n,a\nworld,b\n", "row 0 holds nan"),
        ("blank_text.jsonl", '{"text":"  ","label":1}\n', "empty text in row 0"),
        ("nested.jsonl", '{"text":"a","label":{"x":1}}\n', r"label column 'label' .* row 0 holds \{'x': 1\}"),
        ("broken.jsonl", '{"text": "a"\n', "could not parse"),
        ("broken.parquet", b"PAR1 not really", "could not parse"),
    ],
)
def test_table__refused_with_one_clear_message(tmp_path, name, content, message, reliability):
    with pytest.raises(LayerscopeError, match=message) as caught:
        core.load_dataset(_write(tmp_path, name, content))
    reliability(TABLES, 1, int("\n" in str(caught.value)))
    assert "\n" not in str(caught.value)


def test_missing_named_text_column__names_it_and_the_columns_present(tmp_path):
    with pytest.raises(LayerscopeError, match=r"text_column='sentence' is not in .* columns are: text, label"):
        core.load_dataset(_write(tmp_path, "d.csv", "text,label\nhi,a\n"), text_column="sentence")


def test_a_million_rows_of_one_class__load_and_the_probe_refuses_one_class(tmp_path, reliability):
    path = tmp_path / "million.csv"
    path.write_text("text,label\n" + "same words,only\n" * 1_000_000)
    dataset = core.load_dataset(path)
    reliability(TABLES, 1, int(len(dataset) != 1_000_000))
    assert len(dataset) == 1_000_000 and dataset.table["label"].nunique() == 1
    with pytest.raises(LayerscopeError, match="labels have one class \\('only'\\); a probe needs at least 2 classes"):
        encode_classes(dataset.table["label"].to_numpy(), n_folds=5)


# ----- image folders -------------------------------------------------------------------------
def test_image_folder__a_corrupt_image_is_refused_by_name_and_non_images_are_skipped(tmp_path, reliability):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / label / "a.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image, and not named like one")
    assert len(core.load_dataset(tmp_path)) == 2
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg at all")
    with pytest.raises(LayerscopeError, match=r"dog/broken.jpg is not a readable image"):
        core.load_dataset(tmp_path)
    reliability(OTHERS, 2, 0)  # a non-image skipped, then a corrupt image refused (else the lines above fail)


# ----- SAELens folders -----------------------------------------------------------------------
@pytest.fixture()
def sae_folder(tmp_path) -> Path:
    sae = SparseAutoencoder(4, 8, architecture="topk", k=2, info={"hook_name": "fc1"})
    return save_saelens(sae, tmp_path / "sae")


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "sae_weights.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "sae_weights.safetensors"))


def _edit_cfg(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, **changes}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: _edit_cfg(f, d_in=5), r"W_enc has shape \(4, 8\) but cfg.json \(d_in=5, d_sae=8\) needs \(5, 8\)"),
        (lambda f: _edit_cfg(f, d_sae="8"), "d_sae='8' must be a positive integer"),
        (lambda f: _edit_cfg(f, architecture="gated_v9"), "architecture='gated_v9' is not supported"),
        (lambda f: _edit_weights(f, lambda t: t.pop("W_dec")), "missing W_dec"),
        (lambda f: _edit_weights(f, lambda t: t.update(W_dec=t["W_dec"].to(torch.int32))), "dtype torch.int32"),
        (lambda f: (f / "cfg.json").write_text("{not json"), "is not valid JSON"),
        (lambda f: (f / "sae_weights.safetensors").unlink(), "sae_weights.safetensors is missing"),
    ],
)
def test_saelens_folder__wrong_shapes_keys_or_dtypes_are_refused(sae_folder, damage, message, reliability):
    damage(sae_folder)
    with pytest.raises(LayerscopeError, match=message):
        load_saelens(sae_folder)
    reliability(OTHERS, 1, 0)  # refused with its message: nothing loaded


def test_saelens_folder__float16_weights_are_widened_exactly(sae_folder):
    _edit_weights(sae_folder, lambda t: t.update({k: v.half() for k, v in t.items()}))
    sae = load_saelens(sae_folder)
    assert sae.W_enc.dtype == torch.float32 and torch.equal(sae.W_enc, sae.W_enc.half().float())


def test_saelens_folder__a_pickle_is_refused_and_never_unpickled(sae_folder, tmp_path, reliability):
    from test_hostile_code import WritesMarker

    marker = tmp_path / "marker"
    (sae_folder / "sae_weights.safetensors").unlink()
    torch.save({"W_enc": WritesMarker(marker)}, sae_folder / "sae_weights.pt")
    with pytest.raises(LayerscopeError, match="sae_weights.safetensors is missing"):
        load_saelens(sae_folder)
    os.replace(sae_folder / "sae_weights.pt", sae_folder / "sae_weights.safetensors")  # a pickle under the right name
    with pytest.raises(LayerscopeError, match="is not a readable safetensors file"):
        load_saelens(sae_folder)
    reliability(OTHERS, 2, int(marker.exists()))  # a pickle beside the weights and one under their name
    assert not marker.exists()


# ----- sidecars ------------------------------------------------------------------------------
def _sidecar(folder: Path, **changes) -> Path:
    sidecar = {"kind": "layerscope.figure", "sidecar_version": 1, "layerscope_version": "0.0.1", "name": "fig",
               "regenerable": True, "spec": {"figure": "probe_curve", "runs": ["0123456789abcdef0123"]},
               "runs": [], "files": {}, **changes}
    path = folder / "fig.json"
    path.write_text(json.dumps(sidecar))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sidecar_version": 99}, "sidecar format 99, newer than this Layerscope reads"),
        ({"sidecar_version": "1"}, "sidecar_version='1' must be an integer"),
        ({"kind": "something.else"}, "is not a Layerscope figure sidecar"),
        ({"spec": {"figure": "probe_curve", "runs": ["../../../etc"]}}, r"run key '../../../etc' is not a run key"),
        ({"spec": {"figure": "probe_curve", "runs": ["/tmp/elsewhere"]}}, "is not a run key"),
        ({"runs": [{"key": "..", "model": {}, "dataset": {}}]}, r"run key '..' is not a run key"),
    ],
)
def test_sidecar__another_version_or_tampered_paths_are_refused(store, tmp_path, changes, message, reliability):
    with pytest.raises(LayerscopeError, match=message):
        regenerate(_sidecar(tmp_path, **changes), store, extract_missing=False)
    reliability(OTHERS, 1, int(store.root.exists()))
    assert not store.root.exists()  # nothing was read from or written to the workspace


# ----- uploads -------------------------------------------------------------------------------
def test_upload_over_the_limit__refused_and_nothing_written(store, reliability):
    with pytest.raises(LayerscopeError, match=r"'big.csv' is 2.0 MB; the upload limit is 1 MB"):
        save_upload(store.root / "uploads", "big.csv", b"x" * (2 * 2**20), limit_mb=1)
    reliability(OTHERS, 1, int(store.root.exists()))
    assert not store.root.exists()


def test_upload_limit__matches_the_servers_max_upload_size():
    import tomllib

    from core.data.naming import UPLOAD_LIMIT_MB

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == UPLOAD_LIMIT_MB


# ----- the CLI: one line, exit 2, no traceback, the store untouched --------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("extract", "--model", "digits-mlp", "--data", "{latin1}"), "is not UTF-8 text"),
        (("figure", "--from", "{sidecar}"), "is not a run key"),
    ],
)
def test_cli__bad_file_exits_2_with_one_line_and_leaves_the_store_untouched(tmp_path, args, message, reliability):
    latin1 = _write(tmp_path, "latin1.csv", "text,label\ncafé,a\n".encode("latin-1"))
    sidecar = _sidecar(tmp_path, spec={"figure": "probe_curve", "runs": ["../outside"]})
    workspace = tmp_path / "ws"
    args = [a.format(latin1=latin1, sidecar=sidecar) for a in args]
    done = subprocess.run([sys.executable, "-m", "core", *args, "--workspace", str(workspace)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and message in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("error")]) == 1
    reliability("bad files handed to the CLI: exit 2, one line, the store untouched", 1,
                int((workspace / "runs").exists() or (workspace / "results").exists()))
    assert not (workspace / "runs").exists() and not (workspace / "results").exists()
