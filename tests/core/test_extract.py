"""Extraction against the models' own hidden states, pooling, hooks, resume, damage."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import core
from core.errors import DamagedEntryError, LayerscopeError
from core.extract import capture_layers, pool, run_captured
from core.hooks import replace_output


def _hidden_states(model, texts):
    encoded = model.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.module(**encoded, output_hidden_states=True)
    return out.hidden_states, encoded["attention_mask"]


def test_extract__tokens_equal_hidden_states_minilm(minilm, few_sentences, store):
    acts = core.extract(minilm, few_sentences, layers="all", pooling="tokens", store=store, batch_size=8)
    hidden, mask = _hidden_states(minilm, few_sentences.texts)
    assert acts.layer_names == minilm.default_layers() and len(acts.layer_names) == len(hidden) == 7
    lengths = mask.sum(1).numpy()
    np.testing.assert_array_equal(acts.lengths, lengths)
    for i, layer in enumerate(acts.layer_names):
        for j in (0, 7, len(few_sentences) - 1):
            np.testing.assert_allclose(acts.input_tokens(layer, j), hidden[i][j, : lengths[j]].numpy(), atol=1e-5)
    ids = minilm.tokenizer(few_sentences.texts[3])["input_ids"]
    np.testing.assert_array_equal(acts.token_ids[acts.input_rows(3)], ids)
    assert acts.tokens[acts.input_rows(3)][0] == "[CLS]"


@pytest.mark.parametrize("pooling", ["mean", "first", "last", "max"])
def test_extract__pooling_equals_manual_pooling(minilm, few_sentences, store, pooling):
    acts = core.extract(minilm, few_sentences, layers="all", pooling=pooling, store=store, batch_size=16)
    hidden, mask = _hidden_states(minilm, few_sentences.texts)
    m = mask.unsqueeze(-1).float()
    lengths = mask.sum(1)
    for i, layer in enumerate(acts.layer_names):
        h = hidden[i]
        expected = {
            "mean": lambda: (h * m).sum(1) / m.sum(1),
            "first": lambda: h[:, 0],
            "last": lambda: h[torch.arange(len(h)), lengths - 1],
            "max": lambda: torch.where(m.bool(), h, torch.tensor(-torch.inf)).amax(1),
        }[pooling]()
        assert acts[layer].shape == (len(few_sentences), 384)
        np.testing.assert_allclose(acts[layer], expected.numpy(), atol=1e-5)


@pytest.mark.slow
def test_extract__smollm2_equals_hidden_states(smollm2, few_sentences, session_store):
    texts = few_sentences.texts[:12]
    data = core.load_dataset("demo:sentences", limit=12)
    assert smollm2.is_causal_lm
    layers = smollm2.default_layers()
    assert layers[0] == "model.embed_tokens" and layers[-1] == "model.layers.29" and len(layers) == 31
    acts = core.extract(smollm2, data, layers=[*layers, "model.norm"], pooling="tokens", store=session_store)
    hidden, mask = _hidden_states(smollm2, texts)
    lengths = mask.sum(1).numpy()
    # HF's hidden_states: embeddings, blocks 0..28, then the final norm applied to block 29
    for i, layer in enumerate([*layers[:-1], "model.norm"]):
        for j in range(len(texts)):
            np.testing.assert_allclose(
                acts.input_tokens(layer, j), hidden[i][j, : lengths[j]].numpy(), atol=1e-4, rtol=1e-5
            )
    last = core.extract(smollm2, data, layers=layers[-3:], pooling="last", store=session_store)
    block = layers[-2]
    np.testing.assert_allclose(last[block][5], hidden[layers.index(block)][5, lengths[5] - 1].numpy(), atol=1e-4)


def test_extract__second_request_reads_store(minilm, few_sentences, store):
    calls = []
    first = core.extract(minilm, few_sentences, layers="all", store=store, progress=lambda *a: calls.append(a))
    assert calls and calls[-1][0] == calls[-1][1]
    calls.clear()
    again = core.extract(minilm, few_sentences, layers="all", store=store, progress=lambda *a: calls.append(a))
    assert calls == [] and again.key == first.key
    assert isinstance(again["encoder.layer.2"], np.memmap)
    # a fresh Store object on the same folder (a restart) also hits
    reopened = core.extract(minilm, few_sentences, layers="all", store=core.Store(store.root))
    np.testing.assert_array_equal(reopened["encoder.layer.2"], first["encoder.layer.2"])


def test_capture_layers__removes_hooks_when_forward_raises(minilm):
    def boom(_layer, _tensor):
        raise RuntimeError("boom inside the forward")

    def hooks():  # transformers installs output-capturing hooks of its own; ours must go
        return {name: (list(m._forward_hooks), list(m._forward_pre_hooks)) for name, m in minilm.module.named_modules()}

    before = hooks()
    encoded = minilm.tokenizer(["a short input"], return_tensors="pt")
    with pytest.raises(RuntimeError, match="boom"):
        with capture_layers(minilm.module, ["encoder.layer.1", "encoder.layer.3:input"], boom):
            assert hooks() != before
            run_captured(lambda: minilm.module(**encoded))
    assert hooks() == before


def test_capture_layers__a_blocks_input_is_the_previous_blocks_output(minilm, few_sentences, store):
    layers = ["encoder.layer.2", "encoder.layer.3:input", "encoder.layer.0:input", "embeddings"]
    acts = core.extract(minilm, few_sentences, layers=layers, pooling="tokens", store=store, batch_size=8)
    assert acts.layer_names == layers
    np.testing.assert_array_equal(acts["encoder.layer.3:input"], acts["encoder.layer.2"])
    np.testing.assert_array_equal(acts["encoder.layer.0:input"], acts["embeddings"])


def test_replace_output__at_a_blocks_input_equals_at_the_previous_blocks_output(minilm):
    encoded = minilm.tokenizer(["the same tensor flows on", "twice"], return_tensors="pt", padding=True)

    def halve(hidden: torch.Tensor) -> torch.Tensor:
        return hidden * 0.5

    with torch.inference_mode():
        clean = minilm.module(**encoded).last_hidden_state
        with replace_output(minilm.module, "encoder.layer.1", halve):
            at_output = minilm.module(**encoded).last_hidden_state
        with replace_output(minilm.module, "encoder.layer.2:input", halve):
            at_input = minilm.module(**encoded).last_hidden_state
    assert not torch.allclose(at_output, clean, atol=1e-3)
    torch.testing.assert_close(at_input, at_output)
    assert all(not m._forward_pre_hooks for m in minilm.module.modules())
    with pytest.raises(LayerscopeError, match="'encoder.nothing:input' is not a module"), \
            replace_output(minilm.module, "encoder.nothing:input", halve):
        pass


class _Exploding(nn.Module):
    def forward(self, x):
        raise RuntimeError("exploded in forward")


def test_extract__no_hooks_remain_after_failing_forward(store):
    module = nn.Sequential(nn.Linear(4, 4), _Exploding())
    model = core.load_model(module, preprocess=lambda texts: torch.zeros(len(texts), 4))
    data = core.load_dataset("demo:sentences", limit=4)
    with pytest.raises(RuntimeError, match="exploded"):
        core.extract(model, data, layers=["0", "1"], store=store, pooling="mean")
    assert all(not m._forward_hooks for m in module.modules())
    assert not store.has_run(next(iter([p.name for p in store.runs_dir.iterdir()]), "none").removesuffix(".partial"))


_KILL_SCRIPT = """
import os, signal, sys
import core
store = core.Store(sys.argv[1])
data = core.load_dataset("demo:sentences", limit=64)
def progress(done, total, message):
    if done == 3:
        os.kill(os.getpid(), signal.SIGKILL)
core.extract("minilm", data, layers="all", pooling="tokens", batch_size=8, store=store, progress=progress)
"""


def test_extract__killed_midway_leaves_no_complete_entry_and_resumes(tmp_path, minilm):
    workspace = tmp_path / "ws"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_SCRIPT), str(workspace)], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    store = core.Store(workspace)
    assert store.list_runs() == []
    partial = [p for p in store.runs_dir.iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and not (partial[0] / "meta.json").exists()
    assert json.loads((partial[0] / "progress.json").read_text())["done"] == 3

    data = core.load_dataset("demo:sentences", limit=64)
    calls = []
    resumed = core.extract(minilm, data, layers="all", pooling="tokens", batch_size=8, store=store,
                           progress=lambda done, total, msg: calls.append(done))
    assert calls[0] == 4 and calls[-1] == 8  # batches 1-3 were not recomputed
    clean = core.extract(minilm, data, layers="all", pooling="tokens", batch_size=8, store=core.Store(tmp_path / "clean"))
    for layer in clean.layer_names:
        np.testing.assert_allclose(resumed[layer], clean[layer], atol=1e-6)
    assert [p.name for p in store.runs_dir.iterdir()] == [resumed.key]


def test_store__flipped_byte_is_detected_and_recomputed(minilm, few_sentences, store):
    acts = core.extract(minilm, few_sentences, layers="all", store=store)
    original = np.array(acts["encoder.layer.4"])
    path = acts.path / acts.meta["layer_files"]["encoder.layer.4"]
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedEntryError, match="checksum"):
        store.open_run(acts.key)
    messages = []
    again = core.extract(minilm, few_sentences, layers="all", store=store, progress=lambda d, t, m: messages.append(m))
    assert "damaged" in messages[0]
    np.testing.assert_array_equal(again["encoder.layer.4"], original)
    assert list((store.root / "damaged").iterdir())


def test_extract__reinit_twin_differs(few_sentences, store, minilm):
    twin = core.load_model("minilm", reinit=True, seed=0, device="cpu")
    assert twin.weights_hash != minilm.weights_hash and "untrained" in twin.name
    a = core.extract(minilm, few_sentences, layers=["encoder.layer.5"], store=store)
    b = core.extract(twin, few_sentences, layers=["encoder.layer.5"], store=store)
    assert a.key != b.key
    assert not np.allclose(a["encoder.layer.5"], b["encoder.layer.5"], atol=1e-2)


def test_extract__image_models_on_digits(store):
    digits = core.load_dataset("demo:digits", limit=12)
    mlp = core.load_model("digits-mlp", workspace=store.root, device="cpu")
    acts = core.extract(mlp, digits, layers="all", store=store)
    assert acts.layer_names == ["pixels", "fc1", "relu1", "fc2", "relu2", "logits"]
    assert acts["logits"].shape == (12, 10)
    predicted = np.asarray(acts["logits"]).argmax(1)
    assert (predicted == digits.table["digit"].astype(int).to_numpy()).mean() > 0.8
    cnn = core.load_model("efficientnet-lite0", device="cpu")
    assert len(cnn.default_layers()) == 16
    conv = core.extract(cnn, digits, layers=["_blocks.3", "_blocks.15"], pooling="max", store=store, batch_size=6)
    assert conv["_blocks.15"].shape == (12, 320) and np.isfinite(conv["_blocks.15"]).all()


def test_pool__shapes_and_masks():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(pool(hidden, mask, "mean")[0], hidden[0, :2].mean(0))
    np.testing.assert_allclose(pool(hidden, mask, "last")[0], hidden[0, 1])
    np.testing.assert_allclose(pool(hidden, mask, "max")[0], hidden[0, 1])
    image = torch.randn(2, 5, 4, 4)
    np.testing.assert_allclose(pool(image, None, "mean"), image.mean((2, 3)), atol=1e-6)
    with pytest.raises(LayerscopeError, match="shape"):
        pool(torch.zeros(1, 2, 3, 4, 5), None, "mean")


def test_extract__out_of_memory_halves_the_batch_and_remembers(minilm, few_sentences, store, monkeypatch):
    # CUDA out-of-memory cannot happen on a CPU-only machine: raise it for batches above 5
    # inputs (bench/gpu.py checks the real thing on a GPU with the allocator capped)
    from core.extract.extraction import _Extraction

    real_forward = _Extraction._forward
    sizes = []

    def forward(self, indices):
        sizes.append(len(indices))
        if len(indices) > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, indices)

    monkeypatch.setattr(_Extraction, "_forward", forward)
    acts = core.extract(minilm, few_sentences, layers="all", pooling="tokens", batch_size=16, store=store)
    assert max(sizes[3:]) <= 4 and sizes[:3] == [16, 8, 4]  # 16 -> 8 -> 4, then 4 at a time
    monkeypatch.setattr(_Extraction, "_forward", real_forward)
    clean = core.extract(minilm, few_sentences, layers="all", pooling="tokens", store=core.Store(store.root / "clean"))
    np.testing.assert_allclose(acts["encoder.layer.5"], clean["encoder.layer.5"], atol=1e-5)
