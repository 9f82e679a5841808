"""What every checkpoint of a series shares with the first: its architecture and its tokenisation.

A series compares one network across its training, layer by layer and input by input, so each
checkpoint must have the first's parameters (names and shapes) and, for text models, turn the
inputs into the same token ids. The inputs are tokenised once, by the first checkpoint's
tokenizer, and that tokenisation is handed to every later checkpoint (`SharedTokenizer`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import LayerscopeError
from core.models import LoadedModel


@dataclass(frozen=True)
class Architecture:
    """A checkpoint's class and parameter shapes, kept instead of the model itself."""

    label: str  # the checkpoint it was read from
    class_name: str
    shapes: dict[str, tuple[int, ...]]  # parameter name -> shape

    @classmethod
    def of(cls, label: str, model: LoadedModel) -> Architecture:
        shapes = {name: tuple(p.shape) for name, p in model.module.named_parameters()}
        return cls(label=label, class_name=type(model.module).__name__, shapes=shapes)

    def check_same(self, other: Architecture) -> None:
        """Raise, naming the first difference, unless `other` has this architecture."""
        if other.class_name != self.class_name:
            why = f"it is a {other.class_name}, {self.label!r} a {self.class_name}"
        elif other.shapes == self.shapes:
            return
        else:
            why = _first_difference(self, other)
        raise LayerscopeError(f"checkpoint {other.label!r} has another architecture than {self.label!r}: {why}; "
                              "a series holds checkpoints of one network")


def config_architecture(label: str, folder: Path) -> Architecture | None:
    """The architecture a model folder's config.json describes, built without weights (None if it cannot be).

    Lets a series refuse a checkpoint of another network before extracting any checkpoint.
    """
    import torch
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    if not (folder / "config.json").is_file():
        return None
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            module = AutoModel.from_config(config)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):  # checked when it is loaded instead
        return None
    finally:
        hf_logging.set_verbosity(verbosity)
    class_name = "/".join(getattr(config, "architectures", None) or [type(module).__name__])
    return cls_shapes(label, class_name, module)


def cls_shapes(label: str, class_name: str, module) -> Architecture:
    return Architecture(label=label, class_name=class_name,
                        shapes={name: tuple(p.shape) for name, p in module.named_parameters()})


def _first_difference(first: Architecture, other: Architecture) -> str:
    only_first = [n for n in first.shapes if n not in other.shapes]
    only_other = [n for n in other.shapes if n not in first.shapes]
    if only_first or only_other:
        name, holder = (only_other[0], other.label) if only_other else (only_first[0], first.label)
        return (f"parameter {name!r} is only in {holder!r} ({len(other.shapes)} parameters against "
                f"{len(first.shapes)})")
    name = next(n for n in first.shapes if first.shapes[n] != other.shapes[n])
    return f"parameter {name!r} is {other.shapes[name]} there and {first.shapes[name]} in {first.label!r}"


def tokenizer_signature(tokenizer: Any) -> str:
    """Everything that decides a tokenizer's ids: its full definition (fast tokenizers) or vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        definition.pop("truncation", None)  # set per call by extraction
        definition.pop("padding", None)
    else:
        definition = sorted(tokenizer.get_vocab().items())
    specials = {name: getattr(tokenizer, name, None) for name in ("pad_token_id", "eos_token_id", "bos_token_id")}
    return json.dumps([type(tokenizer).__name__, definition, specials], sort_keys=True, default=str)


def check_same_tokenizer(first_label: str, first: Any, label: str, tokenizer: Any, texts: Sequence[str]) -> None:
    """Raise unless `tokenizer` turns the inputs into the same ids as the first checkpoint's.

    Equal definitions are taken as equal ids; otherwise the inputs are tokenised by both and compared.
    """
    if tokenizer_signature(tokenizer) == tokenizer_signature(first):
        return
    ids_first = first(list(texts), add_special_tokens=True)["input_ids"]
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    for i, (a, b) in enumerate(zip(ids_first, ids, strict=True)):
        if list(a) != list(b):
            raise LayerscopeError(
                f"checkpoint {label!r}'s tokenizer turns input {i} ({texts[i][:60]!r}) into other token ids than "
                f"{first_label!r}'s; a series feeds every checkpoint the same token ids"
            )
    if tokenizer.pad_token_id != first.pad_token_id:
        raise LayerscopeError(f"checkpoint {label!r}'s tokenizer pads with id {tokenizer.pad_token_id}, "
                              f"{first_label!r}'s with {first.pad_token_id}; a series feeds every checkpoint "
                              "the same token ids")


class SharedTokenizer:
    """The first checkpoint's tokenizer, tokenising each list of inputs once for every checkpoint.

    Calls with the same texts and options return copies of the first result (extraction edits
    the lists it gets); every other attribute is the wrapped tokenizer's.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.calls = 0  # how many times the wrapped tokenizer actually ran
        self._done: dict[tuple, list[list[int]]] = {}

    def __call__(self, texts: Sequence[str], **options: Any) -> dict[str, list[list[int]]]:
        key = (tuple(texts), tuple(sorted(options.items())))
        if key not in self._done:
            self.calls += 1
            self._done[key] = [list(ids) for ids in self.tokenizer(list(texts), **options)["input_ids"]]
        return {"input_ids": [list(ids) for ids in self._done[key]]}

    def __getattr__(self, name: str) -> Any:
        if name == "tokenizer":  # not set yet (a copy being built): no endless lookup
            raise AttributeError(name)
        return getattr(self.tokenizer, name)
