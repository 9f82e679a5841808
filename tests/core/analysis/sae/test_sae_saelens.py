"""core.analysis.sae.saelens: SAELens folders written exactly as SAELens reads them, and read back in every layout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from core.analysis.sae import CFG_FILENAME, WEIGHTS_FILENAME, load_saelens, save_saelens
from core.analysis.sae.hook_names import module_for_hook, transformerlens_hooks
from core.errors import LayerscopeError
from sae_helpers import LAYER, random_sae, saelens_weights, write_saelens_folder


def test_save_load__round_trip_is_exact(tmp_path):
    for architecture in ("topk", "standard"):
        sae = random_sae(architecture=architecture)
        sae.info = {"model_name": "minilm", "hook_name": LAYER}
        folder = save_saelens(sae, tmp_path / architecture)
        loaded = load_saelens(folder)
        for name, tensor in sae.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
        assert (loaded.architecture, loaded.k, loaded.d_in, loaded.d_sae) == (architecture, sae.k, 8, 32)
        x = torch.randn(7, 8)
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert loaded.info["hook_name"] == "blocks.3.hook_normalized_resid_post"
        assert loaded.info["layerscope_module"] == LAYER


def test_save__writes_exactly_the_keys_and_shapes_saelens_reads(tmp_path):
    sae = random_sae(d_in=8, d_sae=32, k=4)
    sae.info = {"model_name": "minilm", "hook_name": LAYER, "context_size": 128, "dataset_path": "demo:sentences"}
    folder = save_saelens(sae, tmp_path / "sae")
    assert sorted(p.name for p in folder.iterdir()) == [CFG_FILENAME, WEIGHTS_FILENAME]
    weights = load_file(str(folder / WEIGHTS_FILENAME))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "W_enc": (8, 32), "b_enc": (32,), "W_dec": (32, 8), "b_dec": (8,)}
    assert all(v.dtype == torch.float32 for v in weights.values())
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    # SAELens 6: flat SAEConfig fields + architecture-specific k + metadata
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"]) == ("topk", 8, 32, 4)
    assert (cfg["dtype"], cfg["device"], cfg["normalize_activations"]) == ("float32", "cpu", "none")
    assert cfg["apply_b_dec_to_input"] is True and cfg["reshape_activations"] == "none"
    # the TransformerLens hook of BERT's block 3 output, and the module path beside it
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_normalized_resid_post"
    assert cfg["metadata"]["layerscope_module"] == LAYER and cfg["metadata"]["model_name"] == "minilm"
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6
    assert cfg["sae_lens_version"] == cfg["metadata"]["sae_lens_version"]  # read from either place
    # pre-6 readers: the same facts under their old names
    assert cfg["hook_name"] == "blocks.3.hook_normalized_resid_post" and cfg["hook_layer"] == 3
    assert cfg["activation_fn_str"] == "topk" and cfg["activation_fn_kwargs"] == {"k": 4}
    assert cfg["finetuning_scaling_factor"] is False and cfg["context_size"] == 128


def test_load_saelens__reads_a_folder_in_saelens_6_layout(tmp_path):
    cfg = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False,
           "normalize_activations": "none", "reshape_activations": "none", "architecture": "standard",
           "metadata": {"model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post", "sae_lens_version": "6.12.1"}}
    weights = saelens_weights(6, 12)
    sae = load_saelens(write_saelens_folder(tmp_path / "std", cfg, weights))
    x = torch.randn(5, 6)
    expected = torch.relu(x @ weights["W_enc"] + weights["b_enc"])  # apply_b_dec_to_input=False
    assert torch.allclose(sae.encode(x), expected)
    assert torch.allclose(sae(x), expected @ weights["W_dec"] + weights["b_dec"], atol=1e-5)
    assert sae.info["hook_name"] == "blocks.3.hook_resid_post"


def test_load_saelens__reads_pre_6_topk_and_jumprelu_layouts(tmp_path):
    old_topk = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "standard",
                "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "hook_name": "blocks.0.hook_resid_pre",
                "normalize_activations": False, "apply_b_dec_to_input": True}
    sae = load_saelens(write_saelens_folder(tmp_path / "topk", old_topk, saelens_weights(6, 12)))
    assert (sae.architecture, sae.k) == ("topk", 3)
    assert ((sae.encode(torch.randn(9, 6)) > 0).sum(-1) <= 3).all()
    jump = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "jumprelu",
            "metadata": {"sae_lens_version": "6.0.0"}}
    weights = saelens_weights(6, 12, threshold=torch.full((12,), 0.5))
    sae = load_saelens(write_saelens_folder(tmp_path / "jump", jump, weights))
    x = torch.randn(9, 6)
    pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    assert torch.allclose(sae.encode(x), pre * (pre > 0.5))


@pytest.mark.parametrize("damage, message", [
    ("no_cfg", "cfg.json is missing"),
    ("bad_json", "not valid JSON"),
    ("truncated_weights", "not a readable safetensors file"),
    ("transposed", r"W_enc has shape \(12, 6\) but cfg.json \(d_in=6, d_sae=12\) needs \(6, 12\)"),
    ("missing_key", "missing b_enc"),
    ("gated", "architecture='gated' is not supported"),
    ("k_too_large", "k between 1 and d_sae=12"),
    ("nan", "NaN or inf"),
    ("rescale_standard", "rescale_acts_by_decoder_norm=True is defined for topk SAEs only"),
    ("rescale_zero_row", "W_dec has 1 zero rows"),
])
def test_load_saelens__corrupt_or_wrong_shaped_folders_are_refused(tmp_path, damage, message):
    cfg = {"d_in": 6, "d_sae": 12, "dtype": "float32", "device": "cpu", "architecture": "standard",
           "metadata": {"sae_lens_version": "6.0.0"}}
    weights = saelens_weights(6, 12)
    if damage == "transposed":
        weights["W_enc"] = weights["W_enc"].T
    if damage == "missing_key":
        del weights["b_enc"]
    if damage == "gated":
        cfg["architecture"] = "gated"
    if damage == "k_too_large":
        cfg.update(architecture="topk", k=13)
    if damage == "nan":
        weights["W_dec"][0, 0] = float("nan")
    if damage == "rescale_standard":
        cfg["rescale_acts_by_decoder_norm"] = True
    if damage == "rescale_zero_row":
        cfg.update(architecture="topk", k=3, rescale_acts_by_decoder_norm=True)
        weights["W_dec"][2] = 0.0
    folder = write_saelens_folder(tmp_path / damage, cfg, weights)
    if damage == "no_cfg":
        (folder / CFG_FILENAME).unlink()
    if damage == "bad_json":
        (folder / CFG_FILENAME).write_text("{not json")
    if damage == "truncated_weights":
        data = (folder / WEIGHTS_FILENAME).read_bytes()
        (folder / WEIGHTS_FILENAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(LayerscopeError, match=message):
        load_saelens(folder)


# ----- hook names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, hook", [
    ("model.layers.9", "blocks.9.hook_resid_post"),  # Llama, Mistral, Qwen, Gemma, Phi
    ("transformer.h.2", "blocks.2.hook_resid_post"),  # GPT-2, GPT-Neo, GPT-J
    ("gpt_neox.layers.4", "blocks.4.hook_resid_post"),  # Pythia
    ("model.decoder.layers.1", "blocks.1.hook_resid_post"),  # OPT
    ("model.layers.5:input", "blocks.5.hook_resid_pre"),
    ("transformer.h.0:input", "blocks.0.hook_resid_pre"),  # GPT-2's token + position embeddings
    ("encoder.layer.3", "blocks.3.hook_normalized_resid_post"),  # BERT-style block: after its last LayerNorm
    ("embeddings", "blocks.0.hook_resid_pre"),
    ("model.embed_tokens", "blocks.0.hook_resid_pre"),
    ("transformer.wte", "hook_embed"),  # token embeddings without the positions
    ("encoder.block.2", "encoder.2.hook_resid_post"),  # T5 encoder
    ("vision_model.encoder.layers.3", None),  # no TransformerLens model: the module path stays
    ("features.3", None),
])
def test_save__hook_name_is_the_transformerlens_hook_and_the_module_path_is_kept(tmp_path, layer, hook):
    sae = random_sae()
    sae.info = {"model_name": "m", "hook_name": layer}
    folder = save_saelens(sae, tmp_path / "sae")
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    written = hook or layer
    assert cfg["metadata"]["hook_name"] == cfg["hook_name"] == written
    assert cfg["metadata"]["layerscope_module"] == layer
    loaded = load_saelens(folder)
    assert (loaded.info["hook_name"], loaded.info["layerscope_module"]) == (written, layer)
    again = json.loads((save_saelens(loaded, tmp_path / "again") / CFG_FILENAME).read_text())
    assert (again["metadata"]["hook_name"], again["metadata"]["layerscope_module"]) == (written, layer)


def _block_tensors(module, names: list[str], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each module of `names` returns ("<path>:input": what it receives) on one forward pass."""
    modules, seen, handles = dict(module.named_modules()), {}, []

    def keep(name):
        def hook(_module, args, kwargs, output=None):
            value = output if output is not None else (args[0] if args else kwargs["hidden_states"])
            seen[name] = (value[0] if isinstance(value, tuple) else value).detach().clone()
        return hook

    for name in names:
        path, is_input = name.removesuffix(":input"), name.endswith(":input")
        register = modules[path].register_forward_pre_hook if is_input else modules[path].register_forward_hook
        handles.append(register(keep(name), with_kwargs=True))
    try:
        with torch.no_grad():
            module(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _tiny(family: str):
    import transformers as tf

    small = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 64}
    torch.manual_seed(0)
    return {
        "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**small, num_key_value_heads=2)),
        "gemma": lambda: tf.GemmaForCausalLM(tf.GemmaConfig(**small, num_key_value_heads=2, head_dim=8)),
        "gpt_neox": lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**small)),
        "opt": lambda: tf.OPTForCausalLM(tf.OPTConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=4, ffn_dim=64, word_embed_proj_dim=32)),
        "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4)),
        "bert": lambda: tf.BertModel(tf.BertConfig(**small)),
        "t5": lambda: tf.T5EncoderModel(tf.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                    num_heads=4)),
    }[family]().eval()


@pytest.mark.parametrize("family", ["llama", "gemma", "gpt_neox", "opt", "gpt2", "bert", "t5"])
def test_hook_names__one_hook_name_is_one_tensor_of_the_hugging_face_model(family):
    """Layers the table gives a common TransformerLens hook hold equal tensors in the model itself."""
    module = _tiny(family)
    paths = {name for name, _ in module.named_modules()}
    candidates = [name for name in ("model.embed_tokens", "gpt_neox.embed_in", "embeddings", "transformer.wte")
                  if name in paths]
    for prefix in ("model.layers", "gpt_neox.layers", "model.decoder.layers", "transformer.h", "encoder.layer",
                   "encoder.block"):
        if f"{prefix}.1" in paths:
            candidates += [f"{prefix}.0:input", f"{prefix}.0", f"{prefix}.1:input", f"{prefix}.1"]
    ids = torch.randint(0, 64, (2, 7))
    tensors = _block_tensors(module, candidates, ids)
    shared = [(a, b) for i, a in enumerate(candidates) for b in candidates[i + 1:]
              if set(transformerlens_hooks(a)) & set(transformerlens_hooks(b))]
    # block 0's output is block 1's input; where an embedding is named blocks.0.hook_resid_pre, it is block 0's input
    assert len(shared) == (2 if family in ("llama", "gemma", "gpt_neox", "bert") else 1), shared
    for a, b in shared:
        assert torch.allclose(tensors[a], tensors[b], atol=1e-6), (a, b)
    if family == "gpt2":  # the token embedding is not what block 0 receives (positions are added), so no resid_pre
        assert not torch.allclose(tensors["transformer.wte"], tensors["transformer.h.0:input"])


def test_module_for_hook__maps_transformerlens_hooks_back_to_a_models_module_paths():
    llama = ["model.embed_tokens", "model.layers.0", "model.layers.1", "model.layers.2"]
    assert module_for_hook("blocks.2.hook_resid_post", llama) == "model.layers.2"
    assert module_for_hook("blocks.0.hook_resid_pre", llama) == "model.embed_tokens"
    assert module_for_hook("blocks.2.hook_resid_pre", llama) == "model.layers.1"
    assert module_for_hook("hook_embed", llama) == "model.embed_tokens"
    assert module_for_hook("model.layers.1", llama) == "model.layers.1"
    assert module_for_hook("blocks.7.hook_resid_post", llama) is None
    assert module_for_hook("blocks.0.attn.hook_z", llama) is None
    gpt2 = ["transformer.h.0:input", "transformer.h.0", "transformer.h.1"]
    assert module_for_hook("blocks.0.hook_resid_pre", gpt2) == "transformer.h.0:input"
    assert module_for_hook("blocks.1.hook_resid_pre", gpt2) == "transformer.h.0"  # an output before an input
    bert = ["embeddings", "encoder.layer.0", "encoder.layer.1"]
    assert module_for_hook("blocks.1.hook_normalized_resid_post", bert) == "encoder.layer.1"
    assert module_for_hook("blocks.1.hook_resid_post", bert) is None  # BERT's resid_post precedes ln2: no layer


def test_load_saelens__reads_the_module_path_of_old_and_new_layerscope_files(tmp_path):
    base = {"d_in": 6, "d_sae": 12, "architecture": "standard"}
    files = {
        "old": {"hook_name": "model.layers.4", "sae_lens_version": "6.0.0"},  # the module path as hook_name
        "new": {"hook_name": "blocks.4.hook_resid_post", "layerscope_module": "model.layers.4",
                "sae_lens_version": "6.0.0"},
        "saelens": {"hook_name": "blocks.4.hook_resid_post", "sae_lens_version": "6.54.12"},
    }
    modules = {name: load_saelens(write_saelens_folder(tmp_path / name, {**base, "metadata": metadata},
                                                       saelens_weights(6, 12))).info["layerscope_module"]
               for name, metadata in files.items()}
    assert modules == {"old": "model.layers.4", "new": "model.layers.4", "saelens": None}


@pytest.mark.parametrize("version, written", [("6.54.12", "6.54.12"), ("3.2.0", "6.0.0"), (None, "6.0.0")])
def test_save__keeps_the_sae_lens_version_of_an_imported_sae(tmp_path, version, written):
    cfg = {"d_in": 6, "d_sae": 12, "architecture": "standard", "hook_name": "blocks.1.hook_resid_pre",
           "sae_lens_version": version, "sae_lens_training_version": version}
    sae = load_saelens(write_saelens_folder(tmp_path / "in", cfg, saelens_weights(6, 12)))
    out = json.loads((save_saelens(sae, tmp_path / "out") / CFG_FILENAME).read_text())
    # the layout written is SAELens 6's, so a pre-6 version would send SAELens down its legacy path
    assert out["metadata"]["sae_lens_version"] == out["sae_lens_version"] == written
    assert out["metadata"]["sae_lens_training_version"] == version
    assert out["layerscope"].get("source_sae_lens_version") == (version if version != written else None)
    assert out["metadata"]["hook_name"] == "blocks.1.hook_resid_pre"


# ----- TopK SAEs written by SAELens training (rescale_acts_by_decoder_norm) -----------------------
# A port of SAELens 6.54 sae_lens/saes/topk_sae.py: TopKSAE.encode (with sae.py SAE.process_sae_in for
# normalize_activations="none"), TopK.forward, TopKSAE.decode with act_times_W_dec, and _fold_norm_topk,
# which TopKTrainingSAE.process_state_dict_for_saving_inference applies before save_inference_model writes.
def _saelens_topk_encode(t, cfg, x):
    sae_in = x - t["b_dec"] * cfg["apply_b_dec_to_input"]
    hidden_pre = sae_in @ t["W_enc"] + t["b_enc"]
    if cfg["rescale_acts_by_decoder_norm"]:
        hidden_pre = hidden_pre * t["W_dec"].norm(dim=-1)
    topk_values, topk_indices = torch.topk(hidden_pre, k=cfg["k"], dim=-1, sorted=False)
    result = torch.zeros_like(hidden_pre)
    result.scatter_(-1, topk_indices, topk_values.relu())
    return result


def _saelens_topk_decode(t, cfg, feature_acts):
    if cfg["rescale_acts_by_decoder_norm"]:
        feature_acts = feature_acts * (1 / t["W_dec"].norm(dim=-1))
    return feature_acts @ t["W_dec"] + t["b_dec"]


def _saelens_fold_norm_topk(W_dec_norm, W_enc, b_enc, W_dec):
    b_enc.data = b_enc.data * W_dec_norm
    W_dec_norms = W_dec_norm.unsqueeze(1)
    W_dec.data = W_dec.data / W_dec_norms
    W_enc.data = W_enc.data * W_dec_norms.T


def _saelens_topk_folder(folder, *, inference: bool):
    """A folder as SAELens 6.54 training writes it: final SAE (save_inference_model) or checkpoint (save_model)."""
    d_in, d_sae, k = 16, 48, 6
    g = torch.Generator().manual_seed(3)
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec *= (torch.rand(d_sae, 1, generator=g) * 2.8 + 0.2) / W_dec.norm(dim=1, keepdim=True)  # norms 0.2-3
    state = {"W_enc": torch.randn(d_in, d_sae, generator=g) * 0.3, "b_enc": torch.randn(d_sae, generator=g) * 0.1,
             "W_dec": W_dec, "b_dec": torch.randn(d_in, generator=g) * 0.1}
    metadata = {"sae_lens_version": "6.54.12", "sae_lens_training_version": "6.54.12",
                "dataset_path": "monology/pile-uncopyrighted", "hook_name": "blocks.9.hook_resid_post",
                "model_name": "gpt2", "model_class_name": "HookedTransformer", "hook_head_index": None,
                "context_size": 128, "seqpos_slice": [None], "model_from_pretrained_kwargs": {},
                "prepend_bos": True, "exclude_special_tokens": False, "sequence_separator_token": "bos",
                "disable_concat_sequences": False, "training_architecture": "topk",
                "training_architecture_details": {"decoder_init_norm": 0.1, "use_sparse_activations": False,
                                                  "aux_loss_coefficient": 1.0}}
    cfg = {"d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "none", "reshape_activations": "none", "metadata": metadata, "k": k,
           "rescale_acts_by_decoder_norm": True, "architecture": "topk"}
    if inference:
        _saelens_fold_norm_topk(state["W_dec"].norm(dim=-1).clamp(min=1e-8), state["W_enc"], state["b_enc"],
                                state["W_dec"])
    else:  # TrainingSAEConfig.to_dict(): the training fields at the top level too
        cfg.update(decoder_init_norm=0.1, use_sparse_activations=False, aux_loss_coefficient=1.0)
    return write_saelens_folder(folder, cfg, state), cfg, state


@pytest.mark.parametrize("inference", [True, False], ids=["final", "checkpoint"])
def test_load_saelens__topk_with_decoder_norm_rescaling_gives_saelens_outputs(tmp_path, inference):
    folder, cfg, state = _saelens_topk_folder(tmp_path / "sae", inference=inference)
    norms = state["W_dec"].norm(dim=-1)
    assert torch.allclose(norms, torch.ones(48), atol=1e-5) == inference  # final files hold unit decoder rows
    sae = load_saelens(folder)
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(4)) * 2.0
    expected = _saelens_topk_encode(state, cfg, x)
    latents = sae.encode(x)
    assert torch.equal(latents > 0, expected > 0)
    assert torch.allclose(latents, expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(sae(x), _saelens_topk_decode(state, cfg, expected), rtol=1e-5, atol=1e-5)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(48), atol=1e-5)
    if not inference:  # the rescaling matters here: the plain TopK of the same weights picks other latents
        assert not torch.equal(_saelens_topk_encode(state, {**cfg, "rescale_acts_by_decoder_norm": False}, x) > 0,
                               expected > 0)
    # written back, the folded SAE needs no flag and keeps where it came from
    out = save_saelens(sae, tmp_path / "out")
    written = json.loads((out / CFG_FILENAME).read_text())
    assert written.get("rescale_acts_by_decoder_norm", False) is False
    assert written["metadata"]["hook_name"] == "blocks.9.hook_resid_post"
    assert written["metadata"]["sae_lens_version"] == "6.54.12"
    assert torch.allclose(load_saelens(out).encode(x), latents, rtol=1e-6, atol=1e-6)
