"""Logit lens (nostalgebraist 2020) for causal language models.

Each layer's residual stream is read as if it were the last: the model's own final
norm and unembedding turn it into a next-token distribution. Per layer and position
we keep the top-k tokens and the KL divergence from the model's output distribution,

    KL(p_final || p_layer) = sum_v p_final(v) (log p_final(v) - log p_layer(v))   (nats),

the direction used by the tuned-lens paper (Belrose et al. 2023): how many nats the
layer's guess loses against what the model finally says. At the last block the lens
*is* the model's head, so its KL is 0 up to float round-off (a built-in check).

Works for any Hugging Face causal LM whose head is `final norm -> get_output_embeddings()`:
Llama/SmolLM2/Mistral/Qwen (`model.norm`), GPT-2/Falcon (`transformer.ln_f`), GPT-NeoX
(`final_layer_norm`), OPT (`model.decoder.final_layer_norm`), Phi (`final_layernorm`).
`config.final_logit_softcapping` (Gemma 2) is applied as the model does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import LayerscopeError
from core.hooks import capture_layers, run_captured, split_layer
from core.models import LoadedModel
from core.progress import Progress, report
from core.validation import check_int

logger = logging.getLogger(__name__)

LENS_VERSION = 2
# attribute names of the final norm on the base model (or its decoder), most common first
FINAL_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f")


@dataclass(frozen=True, eq=False)
class LensResult:
    """Logit-lens readout of one input text.

    L = number of layers, T = number of input tokens, k = top_k.
    Position t's distribution is the prediction of token t + 1.
    """

    model_name: str  # the model's name as loaded ("smollm2", a folder, ...)
    text: str  # the input text
    layer_names: tuple[str, ...]  # (L,) module paths, model order
    tokens: tuple[str, ...]  # (T,) input tokens, decoded one by one
    token_ids: np.ndarray  # (T,) int64 input token ids
    top_tokens: np.ndarray  # (L, T, k) str, most probable next tokens under the lens, best first
    top_ids: np.ndarray  # (L, T, k) int64 their ids
    top_probs: np.ndarray  # (L, T, k) float64 their probabilities
    kl_to_final: np.ndarray  # (L, T) float64 KL(p_final || p_layer) in nats
    mean_kl: np.ndarray  # (L,) float64 mean of kl_to_final over positions
    final_top_tokens: tuple[str, ...]  # (T,) the model's own top next token at each position
    params: dict[str, Any] = field(default_factory=dict)  # top_k, max_length, truncated, norm/unembed paths

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def n_positions(self) -> int:
        return len(self.tokens)


def _module_path(root: nn.Module, target: nn.Module) -> str | None:
    return next((name for name, m in root.named_modules() if m is target and name), None)


def find_final_norm(module: nn.Module) -> tuple[str, nn.Module]:
    """(path, module) of the norm a causal LM applies before its unembedding.

    Looks on the base model and, for OPT-style models, on its `decoder`, for the
    attributes in FINAL_NORM_NAMES. Raises LayerscopeError when there is none.
    """
    base = getattr(module, "base_model", module)
    places = [base]
    decoder = getattr(base, "decoder", None)
    if isinstance(decoder, nn.Module):
        places.append(decoder)
    for place in places:
        for name in FINAL_NORM_NAMES:
            norm = getattr(place, name, None)
            if isinstance(norm, nn.Module):
                path = _module_path(module, norm)
                if path is not None:
                    return path, norm
    raise LayerscopeError(
        f"could not find the final norm of {type(module).__name__}: its base model has none of "
        f"{', '.join(FINAL_NORM_NAMES)}; the logit lens needs final norm + unembedding"
    )


def find_unembedding(module: nn.Module) -> tuple[str, nn.Module]:
    """(path, module) of the output embedding (`get_output_embeddings()`, e.g. `lm_head`)."""
    get = getattr(module, "get_output_embeddings", None)
    head = get() if callable(get) else None
    path = _module_path(module, head) if isinstance(head, nn.Module) else None
    if path is None:
        raise LayerscopeError(
            f"{type(module).__name__} has no output embedding (get_output_embeddings() gave none); "
            "the logit lens needs a causal LM with an unembedding such as smollm2"
        )
    return path, head


def _check_model(model: LoadedModel) -> None:
    if not isinstance(model, LoadedModel):
        raise LayerscopeError(f"model must be a LoadedModel from core.load_model; got {type(model).__name__}")
    if not model.is_causal_lm or model.tokenizer is None:
        kind = type(model.module).__name__
        raise LayerscopeError(
            f"model {model.name!r} ({kind}) is not a causal language model: it has no next-token head to read "
            "layers through. The logit lens needs a causal LM such as smollm2"
        )


def _softcap(logits: torch.Tensor, config: Any) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _decode_each(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own (" the", not "Ġthe"), so a reader sees the text."""
    return [tokenizer.decode([int(i)]) for i in ids]


def logit_lens(
    model: LoadedModel,
    text: str,
    *,
    layers: str | Sequence[str] | None = None,
    top_k: int = 5,
    max_length: int | None = None,
    progress: Progress | None = None,
) -> LensResult:
    """Read every layer of a causal LM through its final norm and unembedding.

    layers: "default"/None (hidden_states[0] + every block: the residual stream), or layer
        names (module paths, or "<module path>:input") whose tensors are (batch, tokens, d_model).
    top_k: tokens kept per layer and position.
    max_length: longer inputs are cut to this many tokens (default the model's; recorded).
    progress: hears of the forward pass, then of each layer read (len(layers) + 1 steps).
    Returns a LensResult with (L, T, k) top tokens/probabilities and (L, T) KL to the output.
    Raises LayerscopeError for encoders, empty text, bad layers or top_k.
    """
    _check_model(model)
    if not isinstance(text, str) or not text.strip():
        raise LayerscopeError("text is empty; type a sentence for the logit lens to read")
    module = model.module
    vocab = getattr(module.config, "vocab_size", None) or len(model.tokenizer)
    top_k = check_int("top_k", top_k, low=1, high=vocab)
    layer_paths = model.resolve_layers(layers)
    norm_path, norm = find_final_norm(module)
    head_path, head = find_unembedding(module)
    if {head_path, norm_path} & {split_layer(path)[0] for path in layer_paths}:
        raise LayerscopeError(f"layers must be residual-stream layers, not the head itself ({head_path}, {norm_path})")
    max_length = check_int("max_length", max_length or model.max_length, low=1)  # None or 0: the model's own
    ids = model.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]
    truncated = len(ids) > max_length
    ids = ids[:max_length]
    if not ids:
        raise LayerscopeError(f"text {text!r} has no tokens")
    input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)  # (1, T)

    # the head's own output is captured too: the reference distribution, and the last hook
    # to fire, so capture_layers' early stop only skips the loss computation
    def keep(_name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[0]  # (T, d) or (T, V)

    report(progress, 0, len(layer_paths) + 1, f"running {model.name} on {len(ids)} tokens")
    with torch.inference_mode():
        with capture_layers(module, [*layer_paths, head_path], keep) as captured:
            run_captured(lambda: module(input_ids=input_ids, use_cache=False))
        missing = [p for p in [*layer_paths, head_path] if p not in captured]
        if missing:
            raise LayerscopeError(f"layer {missing[0]!r} was not run by the model's forward pass; pick another layer")
        final_logp = torch.log_softmax(_softcap(captured[head_path].double(), module.config), dim=-1)  # (T, V)
        final_p = final_logp.exp()
        width = head.weight.shape[1] if isinstance(getattr(head, "weight", None), torch.Tensor) else None
        head_dtype = next(head.parameters()).dtype

        T, k, L = len(ids), top_k, len(layer_paths)
        top_ids = np.zeros((L, T, k), dtype=np.int64)
        top_probs = np.zeros((L, T, k))
        kl = np.zeros((L, T))
        for li, path in enumerate(layer_paths):
            hidden = captured[path]  # (T, d)
            if hidden.ndim != 2 or hidden.shape[0] != T or (width is not None and hidden.shape[-1] != width):
                raise LayerscopeError(
                    f"layer {path!r} outputs shape {tuple(hidden.shape)}; the unembedding takes ({T}, {width}). "
                    "Pick residual-stream layers (the model's blocks, e.g. the default layers)"
                )
            logits = _softcap(head(norm(hidden.to(head_dtype))).double(), module.config)  # (T, V)
            logp = torch.log_softmax(logits, dim=-1)
            probs, best = logp.exp().topk(k, dim=-1)  # (T, k)
            top_ids[li], top_probs[li] = best.cpu().numpy(), probs.cpu().numpy()
            kl[li] = (final_p * (final_logp - logp)).sum(-1).clamp_min(0.0).cpu().numpy()
            report(progress, li + 2, L + 1, f"layer {li + 1} of {L} read through the unembedding")
        final_best = final_logp.argmax(-1).cpu().numpy()

    tokenizer = model.tokenizer
    unique, inverse = np.unique(np.concatenate([top_ids.ravel(), final_best]), return_inverse=True)
    decoded = np.array(_decode_each(tokenizer, unique.tolist()), dtype=str)[inverse]  # each id decoded once
    top_tokens = decoded[: top_ids.size].reshape(top_ids.shape)
    final_tokens = decoded[top_ids.size :]
    return LensResult(
        model_name=model.name,
        text=text,
        layer_names=tuple(layer_paths),
        tokens=tuple(_decode_each(tokenizer, ids)),
        token_ids=np.asarray(ids, dtype=np.int64),
        top_tokens=top_tokens,
        top_ids=top_ids,
        top_probs=top_probs,
        kl_to_final=kl,
        mean_kl=kl.mean(axis=1),
        final_top_tokens=tuple(str(t) for t in final_tokens),
        params={
            "top_k": k,
            "max_length": max_length,
            "truncated": truncated,
            "final_norm": norm_path,
            "unembedding": head_path,
            "kl": "KL(p_final || p_layer), nats",
            "version": LENS_VERSION,
        },
    )
