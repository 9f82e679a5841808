"""Model loading: bundled, folders, hub ids offline, factories, layer discovery."""

from __future__ import annotations

import socket
import textwrap
import types

import pytest
import torch

import core
from core.errors import LayerscopeError
from core.models.layers import block_list, checked_default_layers, default_layers, hookable_layers


def test_minilm__default_layers_are_the_residual_stream(minilm):
    assert minilm.default_layers() == ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
    assert "encoder.layer.3.attention.self.query" in minilm.layer_names()
    assert minilm.resolve_layers("all") == minilm.default_layers()
    assert minilm.resolve_layers("embeddings, encoder.layer.5") == ["embeddings", "encoder.layer.5"]


def test_resolve_layers__unknown_layer_names_the_value(minilm):
    with pytest.raises(LayerscopeError, match="'encoder.layer.9' does not exist in minilm"):
        minilm.resolve_layers(["encoder.layer.9"])


def test_default_layers__sequential_and_modulelist():
    seq = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    assert default_layers(seq) == ["0", "1", "2"]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Linear(2, 2)
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(4))

    assert default_layers(Net()) == [f"blocks.{i}" for i in range(4)]
    assert hookable_layers(Net())[:2] == ["stem", "blocks"]


class _Stream(torch.nn.Module):
    """An embedding, a scale between it and the blocks, and a shift between blocks 0 and 1 when asked."""

    def __init__(self, *, scale: float, shift_after_first: bool):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(3))
        self.scale, self.shift_after_first = scale, shift_after_first

    def get_input_embeddings(self):
        return self.embed

    def forward(self, ids):
        hidden = self.embed(ids) * self.scale  # (batch, tokens, 4)
        for i, block in enumerate(self.blocks):
            hidden = block(hidden)
            if i == 0 and self.shift_after_first:
                hidden = hidden + 1.0
        return hidden


@pytest.mark.parametrize(("scale", "shift", "expected"), [
    (1.0, False, ["embed", "blocks.0", "blocks.1", "blocks.2"]),
    (2.0, False, ["blocks.0:input", "blocks.0", "blocks.1", "blocks.2"]),
    (1.0, True, ["embed", "blocks.1:input", "blocks.1", "blocks.2"]),
])
def test_checked_default_layers__name_what_the_next_block_receives(scale, shift, expected):
    model = _Stream(scale=scale, shift_after_first=shift).eval()
    ids = torch.tensor([[1, 2, 3]])
    assert default_layers(model) == ["embed", "blocks.0", "blocks.1", "blocks.2"]  # without running it
    assert checked_default_layers(model, lambda: model(ids)) == expected
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_checked_default_layers__a_failing_forward_gives_the_first_blocks_input():
    model = _Stream(scale=1.0, shift_after_first=False)
    layers = checked_default_layers(model, lambda: model(torch.tensor([[99]])))  # index out of range
    assert layers == ["blocks.0:input", "blocks.0", "blocks.1", "blocks.2"]


def test_block_list__prefers_the_configs_layer_count_then_the_shallowest():
    class Net(torch.nn.Module):
        def __init__(self, n_layers: int | None):
            super().__init__()
            if n_layers is not None:
                self.config = types.SimpleNamespace(num_hidden_layers=n_layers)
            # blocks of two sub-layers each (as T5), then a longer list of something else
            self.block = torch.nn.ModuleList(
                torch.nn.Module() for _ in range(2)
            )
            for sub in self.block:
                sub.layer = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])
            self.heads = torch.nn.ModuleList(torch.nn.Identity() for _ in range(5))

    assert block_list(Net(2))[0] == "block"  # "block.0.layer" is as long but deeper
    assert block_list(Net(None))[0] == "heads"  # no config: the longest list


def test_layer_names__list_input_layers_before_their_module(minilm):
    names = hookable_layers(minilm.module, inputs=["encoder.layer.0:input", "encoder.layer.3"])
    assert names[names.index("encoder.layer.0:input") + 1] == "encoder.layer.0"
    assert "encoder.layer.3:input" not in names and len(names) == len(hookable_layers(minilm.module)) + 1
    assert minilm.resolve_layers("encoder.layer.2:input") == ["encoder.layer.2:input"]


def test_load_model__local_hf_folder(tmp_path, minilm):
    minilm.module.save_pretrained(tmp_path / "copy")
    minilm.tokenizer.save_pretrained(tmp_path / "copy")
    loaded = core.load_model(tmp_path / "copy", device="cpu")
    assert loaded.default_layers() == minilm.default_layers()
    assert loaded.weights_hash == core.load_model(str(tmp_path / "copy"), device="cpu").weights_hash


def test_load_model__hub_id_without_network_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LayerscopeError, match="could not load 'nobody/no-such-model' from the Hugging Face hub"):
        core.load_model("nobody/no-such-model")


def test_load_model__hub_id_with_the_hub_unreachable_names_the_host(monkeypatch):
    with socket.socket() as closed:  # a local port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(LayerscopeError, match=rf"not cached here and 127\.0\.0\.1:{port} is not reachable"):
        core.load_model("nobody/no-such-model")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-such-model", "is not a bundled model"),
        ("./missing/folder/x/y", "is not a bundled model"),
        ("digits-mlp:seeds=2", "the only option is seed"),
        ("json:nothing_here", "has no attribute"),
        ("no_such_package_xyz:make", "cannot import"),
    ],
)
def test_load_model__bad_names(name, message):
    with pytest.raises(LayerscopeError, match=message):
        core.load_model(name)


def test_load_model__folder_without_config(tmp_path):
    with pytest.raises(LayerscopeError, match="no config.json"):
        core.load_model(tmp_path)


def test_load_model__factory_with_preprocess(tmp_path, monkeypatch, store):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch

        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

        def prep(texts):
            return torch.tensor([[len(t), t.count(" "), 1.0] for t in texts])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = core.load_model("my_models:make", preprocess="my_models:prep")
    assert model.default_layers() == ["0", "1", "2"]
    acts = core.extract(model, core.load_dataset("demo:sentences", limit=5), store=store)
    assert acts["2"].shape == (5, 2)
    with pytest.raises(LayerscopeError, match="preprocess"):
        core.load_model("my_models:make")


def test_extract__pooling_that_does_not_fit(store):
    digits = core.load_dataset("demo:digits", limit=4)
    model = core.load_model("efficientnet-lite0", device="cpu")
    for pooling in ("last", "tokens"):
        with pytest.raises(LayerscopeError, match=f"pooling='{pooling}' does not fit"):
            core.extract(model, digits, pooling=pooling, store=store)
    with pytest.raises(LayerscopeError, match="takes image inputs"):
        core.extract(model, core.load_dataset("demo:sentences", limit=4), store=store)
    assert not store.runs_dir.exists() or list(store.runs_dir.iterdir()) == []
