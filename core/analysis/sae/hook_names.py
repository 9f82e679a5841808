"""TransformerLens hook names of Layerscope's layers, and back: the `hook_name` of SAELens' cfg.json.

SAELens attaches an SAE at ``metadata.hook_name``, a TransformerLens hook point
(``HookedSAETransformer.add_sae`` skips an SAE whose hook it does not find, with a logged
warning only); Layerscope names a layer by the Hugging Face module path, optionally as the
input of a module (``"<path>:input"``). A path has a hook name where both name the same
tensor (TransformerLens: ``HookedTransformer.forward``, ``components/bert_block.py``,
``components/bert_embed.py``, ``HookedEncoder.encoder_output``, ``components/t5_block.py``):

* decoder block N, ``model.layers.N`` (Llama, Mistral, Qwen, Gemma, Phi), ``transformer.h.N``
  (GPT-2, GPT-Neo, GPT-J), ``gpt_neox.layers.N`` (Pythia), ``model.decoder.layers.N`` (OPT):
  ``blocks.N.hook_resid_post``; its input ``<block>:input``: ``blocks.N.hook_resid_pre``;
* BERT-style encoder block N, ``encoder.layer.N``: ``blocks.N.hook_normalized_resid_post``
  (after the block's second LayerNorm); ``encoder.layer.N:input``: ``blocks.N.hook_resid_pre``;
* ``embeddings`` (BERT-style: LayerNorm of word + position + type): ``blocks.0.hook_resid_pre``
  (= ``hook_full_embed``); ``model.embed_tokens`` and ``gpt_neox.embed_in`` (rotary models add
  nothing to them): ``blocks.0.hook_resid_pre`` (= ``hook_embed``); ``transformer.wte`` (GPT-2's
  token embedding, before the positions are added): ``hook_embed``;
* T5 encoder block N, ``encoder.block.N``: ``encoder.N.hook_resid_post``; its input
  ``encoder.N.hook_resid_pre``.

Any other path has no hook name and is kept as it is. The list reads a path, not a model:
``encoder.layer.N`` is taken to be a post-LayerNorm text encoder (SAEs are trained on the
token runs of text models), and ``model.embed_tokens`` to feed the first block unchanged,
which holds for every family above in transformers >= 5 (Gemma scales inside the module).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

INPUT_SUFFIX = ":input"  # "<module path>:input" names what a module receives

# block lists, by pattern of the block's module path: (TransformerLens prefix, hook of the block's output)
_BLOCKS = (
    (re.compile(r"(?:model\.layers|transformer\.h|gpt_neox\.layers|model\.decoder\.layers)\.(\d+)"),
     "blocks", "hook_resid_post"),
    (re.compile(r"encoder\.layer\.(\d+)"), "blocks", "hook_normalized_resid_post"),
    (re.compile(r"encoder\.block\.(\d+)"), "encoder", "hook_resid_post"),
)
# embedding modules whose output is the first block's input, and their other TransformerLens names
_EMBEDDINGS = {
    "model.embed_tokens": ("blocks.0.hook_resid_pre", "hook_embed"),
    "gpt_neox.embed_in": ("blocks.0.hook_resid_pre", "hook_embed"),
    "embeddings": ("blocks.0.hook_resid_pre", "hook_full_embed"),
    "transformer.wte": ("hook_embed",),
}


def transformerlens_hooks(layer: str) -> tuple[str, ...]:
    """Every TransformerLens hook holding the tensor of Layerscope layer `layer` (the usual name first).

    A block's output is also the next block's ``hook_resid_pre``; () when there is none.
    """
    path, is_input = (layer[: -len(INPUT_SUFFIX)], True) if layer.endswith(INPUT_SUFFIX) else (layer, False)
    if not is_input and path in _EMBEDDINGS:
        return _EMBEDDINGS[path]
    for pattern, prefix, output_hook in _BLOCKS:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        n = int(match.group(1))
        if is_input:
            before = (f"{prefix}.{n - 1}.{output_hook}",) if n > 0 else ()
            return (f"{prefix}.{n}.hook_resid_pre", *before)
        return (f"{prefix}.{n}.{output_hook}", f"{prefix}.{n + 1}.hook_resid_pre")
    return ()


def transformerlens_hook(layer: str) -> str | None:
    """The TransformerLens hook name of Layerscope layer `layer`, or None when there is none."""
    hooks = transformerlens_hooks(layer)
    return hooks[0] if hooks else None


def is_transformerlens_hook(name: str | None) -> bool:
    """Whether `name` reads as a TransformerLens hook point (its last part starts with ``hook_``)."""
    return bool(name) and str(name).rsplit(".", 1)[-1].startswith("hook_")


def saelens_hook_name(layer: str) -> str:
    """What SAELens' cfg.json should name as the hook of `layer`: its TransformerLens hook, else the path."""
    return transformerlens_hook(layer) or layer


def module_for_hook(hook_name: str | None, layers: Iterable[str]) -> str | None:
    """The one of `layers` (a model's or a run's layer names) whose tensor `hook_name` names, or None.

    A module path among `layers` is its own answer; a TransformerLens hook maps back through the
    table above (``blocks.9.hook_resid_post`` -> ``model.layers.9`` in a Llama), preferring a
    module's output to a block's input.
    """
    if not hook_name:
        return None
    layers = list(layers)
    if hook_name in layers:
        return hook_name
    matches = [layer for layer in layers if hook_name in transformerlens_hooks(layer)]
    matches.sort(key=lambda layer: layer.endswith(INPUT_SUFFIX))
    return matches[0] if matches else None
