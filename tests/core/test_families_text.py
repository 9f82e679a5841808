"""Text model families loaded from folders: default layers, extraction against HF's hidden states, the logit lens.

Every family is a tiny random model saved with `save_pretrained` (tests/core/family_builders.py)
and loaded through `core.load_model(folder)`, the path a user's folder takes. HF's own
`output_hidden_states` of each input run alone (no padding) is the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core.errors import LayerscopeError
from family_builders import FAMILIES, SPECIAL_IDS, save_family, save_model

POOLINGS = ("mean", "first", "last", "max", "tokens")
CAUSAL = [name for name, family in FAMILIES.items() if family.causal]
NO_FINAL_NORM = ["opt_350m_layout"]  # causal LMs the logit lens refuses: no final norm to read layers through
ATOL, RTOL = 2e-5, 1e-4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (folder, loaded model): each family built, saved and loaded once per module."""
    cache: dict[str, tuple[Path, core.models.LoadedModel]] = {}

    def get(name: str):
        if name not in cache:
            folder = save_family(name, tmp_path_factory.mktemp(name))
            cache[name] = folder, core.load_model(folder, device="cpu")
        return cache[name]

    return get


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return core.Store(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="module")
def texts_data():
    data = core.load_dataset("demo:sentences", limit=7)
    lengths = {len(text.split()) for text in data.texts}
    assert len(lengths) > 2, "the inputs must differ in length for padding to matter"
    return data


def hidden_states(model, text: str) -> list[torch.Tensor]:
    """HF's output_hidden_states of `text` run alone: one (tokens, d) tensor per entry."""
    encoded = model.tokenizer(text, return_tensors="pt")
    options = {"use_cache": False} if model.is_causal_lm else {}
    with torch.inference_mode():
        out = model.module(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                           output_hidden_states=True, **options)
    return [h[0] for h in out.hidden_states]


def pooled(tokens: torch.Tensor, pooling: str) -> np.ndarray:
    """tokens: (T, d) -> the pooled (d,) vector, or (T, d) for "tokens"."""
    return {
        "mean": lambda: tokens.mean(0),
        "first": lambda: tokens[0],
        "last": lambda: tokens[-1],
        "max": lambda: tokens.amax(0),
        "tokens": lambda: tokens,
    }[pooling]().numpy()


def row(acts, layer: str, i: int) -> np.ndarray:
    return acts.input_tokens(layer, i) if acts.pooling == "tokens" else np.asarray(acts[layer][i])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_default_layers__are_the_residual_stream_of_each_family(built, name):
    family = FAMILIES[name]
    _, model = built(name)
    assert model.default_layers() == list(family.default_layers)
    assert model.resolve_layers("all") == model.default_layers()
    names = model.layer_names()
    assert set(model.default_layers()) <= set(names)  # the dashboard offers every default layer
    for layer in model.default_layers():
        if layer.endswith(":input"):  # an input layer is listed just before its module
            assert names[names.index(layer) + 1] == layer.removesuffix(":input")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_extract__every_pooling_equals_hf_hidden_states(built, workspace, texts_data, name):
    family = FAMILIES[name]
    _, model = built(name)
    defaults = model.default_layers()
    reference = [hidden_states(model, text) for text in texts_data.texts]
    assert all(len(h) == len(defaults) for h in reference)
    # where HF normalises its last entry, the last block is read before the norm and the norm on its own
    layers = [*defaults, family.final_norm] if family.final_norm else defaults
    compared = [*defaults[:-1], layers[-1]]  # compared[j] is HF's hidden_states[j]
    for pooling in POOLINGS:
        acts = core.extract(model, texts_data, layers=layers, pooling=pooling, batch_size=3, store=workspace)
        for index, layer in enumerate(compared):
            for i, hidden in enumerate(reference):
                np.testing.assert_allclose(row(acts, layer, i), pooled(hidden[index], pooling), atol=ATOL, rtol=RTOL,
                                           err_msg=f"{name} {layer} {pooling} input {i}")
        if family.final_norm and pooling == "tokens":  # the last block's output, normalised, is HF's last entry
            norm = dict(model.module.named_modules())[family.final_norm]
            for i, hidden in enumerate(reference):
                with torch.inference_mode():
                    normed = norm(torch.tensor(row(acts, defaults[-1], i))).numpy()
                np.testing.assert_allclose(normed, hidden[-1].numpy(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", [name for name in CAUSAL if name not in NO_FINAL_NORM])
def test_logit_lens__last_layer_is_the_models_own_output(built, name):
    from core.analysis.lens import logit_lens

    _, model = built(name)
    text = "The river runs past the old mill"
    result = logit_lens(model, text, top_k=5)
    assert list(result.layer_names) == model.default_layers()  # layer 0 read as the model reads it
    ids = torch.tensor([result.token_ids.tolist()])
    with torch.inference_mode():
        probs = torch.softmax(model.module(input_ids=ids, use_cache=False).logits[0].double(), dim=-1)
    top_probs, top_ids = probs.topk(5, dim=-1)
    np.testing.assert_array_equal(result.top_ids[-1], top_ids.numpy())
    np.testing.assert_allclose(result.top_probs[-1], top_probs.numpy(), atol=1e-6)
    assert result.mean_kl[-1] < 1e-8


@pytest.mark.parametrize("name", NO_FINAL_NORM)
def test_logit_lens__without_a_final_norm_is_refused_by_name(built, name):
    from core.analysis.lens import logit_lens

    _, model = built(name)
    with pytest.raises(LayerscopeError, match="could not find the final norm of OPTForCausalLM"):
        logit_lens(model, "The river runs past the old mill")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_untrained_twin__loads_and_extracts_other_numbers(built, workspace, texts_data, name):
    folder, model = built(name)
    twin = core.load_model(folder, reinit=True, device="cpu")
    assert twin.default_layers() == model.default_layers() and twin.weights_hash != model.weights_hash
    layers = model.default_layers()[-1:]
    trained = core.extract(model, texts_data, layers=layers, pooling="mean", store=workspace)
    untrained = core.extract(twin, texts_data, layers=layers, pooling="mean", store=workspace)
    assert trained.key != untrained.key and np.isfinite(untrained[layers[0]]).all()
    assert not np.allclose(trained[layers[0]], untrained[layers[0]], atol=1e-3)


def test_t5_encoder_decoder_folder__reads_its_encoder(tmp_path, workspace, texts_data):
    import transformers

    family = FAMILIES["t5_encoder"]
    config = transformers.T5Config(**{**SPECIAL_IDS, **family.config})
    torch.manual_seed(0)
    full = transformers.T5Model(config).eval()
    model = core.load_model(save_model(full, tmp_path / "t5"), device="cpu")
    assert type(model.module).__name__ == "T5EncoderModel" and "decoder is not loaded" in model.description
    assert model.default_layers() == list(family.default_layers)
    acts = core.extract(model, texts_data, layers="all", pooling="tokens", store=workspace)
    for i, text in enumerate(texts_data.texts):
        encoded = model.tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            reference = full.encoder(**encoded, output_hidden_states=True).hidden_states
        for layer, hidden in zip(acts.layer_names[:-1], reference):
            np.testing.assert_allclose(acts.input_tokens(layer, i), hidden[0].numpy(), atol=ATOL, rtol=RTOL)


def test_encoder_decoder_without_an_encoder_class__is_refused_by_name(tmp_path):
    import transformers

    config = transformers.BartConfig(**SPECIAL_IDS, vocab_size=30522, d_model=32, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, max_position_embeddings=128)
    folder = save_model(transformers.BartModel(config), tmp_path / "bart")
    with pytest.raises(LayerscopeError, match="bart is an encoder-decoder family that Layerscope cannot read"):
        core.load_model(folder, device="cpu")


@pytest.mark.parametrize("name", ["llama", "gpt2", "opt"])
def test_left_padding_without_pad_token__batch_composition_changes_nothing(tmp_path, texts_data, name):
    model = core.load_model(save_family(name, tmp_path / name, padding_side="left", pad_token=False), device="cpu")
    assert model.tokenizer.padding_side == "left" and model.tokenizer.pad_token_id is None
    n = len(texts_data)
    order = np.random.default_rng(0).permutation(n)
    shuffled_csv = tmp_path / "shuffled.csv"
    texts_data.table.iloc[order].to_csv(shuffled_csv, index=False)
    shuffled = core.load_dataset(shuffled_csv)
    layers = [model.default_layers()[0], model.default_layers()[-1]]
    for pooling in ("mean", "last", "tokens"):
        runs = {size: core.extract(model, texts_data, layers=layers, pooling=pooling, batch_size=size,
                                   store=core.Store(tmp_path / f"ws-{pooling}-{size}")) for size in (1, 3, n)}
        mixed = core.extract(model, shuffled, layers=layers, pooling=pooling, batch_size=3,
                             store=core.Store(tmp_path / f"ws-{pooling}-shuffled"))
        for layer in layers:
            for i in range(n):
                alone = row(runs[1], layer, i)
                for size in (3, n):
                    np.testing.assert_allclose(row(runs[size], layer, i), alone, atol=ATOL, rtol=RTOL)
                shuffled_row = int(np.flatnonzero(order == i)[0])
                np.testing.assert_allclose(row(mixed, layer, shuffled_row), alone, atol=ATOL, rtol=RTOL)


def test_input_layers__resolve_for_any_module_and_unknown_ones_are_refused(built):
    _, model = built("gpt2")
    assert model.resolve_layers("transformer.h.1:input, transformer.ln_f:input") == [
        "transformer.h.1:input", "transformer.ln_f:input"]
    with pytest.raises(LayerscopeError, match="'transformer.h.7:input' does not exist in"):
        model.resolve_layers(["transformer.h.7:input"])


def test_next_token_losses__splice_at_an_input_layer(built):
    from core.analysis.sae.evaluation import next_token_losses
    from core.analysis.sae.model import SparseAutoencoder

    _, model = built("gpt2")
    zero_sae = SparseAutoencoder(32, 8, architecture="standard")  # all-zero weights: reconstructs zeros
    texts = ["The river runs past the old mill", "A short one"]
    losses = next_token_losses(zero_sae, model, "transformer.h.0:input", texts)
    assert losses["sae"] == pytest.approx(losses["zero"]) and losses["sae"] != pytest.approx(losses["clean"])
    assert not any(m._forward_pre_hooks for m in model.module.modules())
