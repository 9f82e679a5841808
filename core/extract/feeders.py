"""Feeding a model batches of inputs: tokenised text, or tensors from the model's own preprocess."""

from __future__ import annotations

import numpy as np
import torch

from core.data import Dataset
from core.errors import LayerscopeError
from core.models import LoadedModel


class TextFeeder:
    """Pre-tokenised text inputs for a Hugging Face model; batches are right-padded.

    Right padding whatever the tokenizer's `padding_side`: real tokens come first, so a causal
    model sees them at positions 0..n-1 exactly as when each input runs alone, and the pad id
    (the tokenizer's, else its eos, else 0) only fills positions the attention mask hides.
    """

    def __init__(self, model: LoadedModel, texts: list[str], max_length: int) -> None:
        tokenizer = model.tokenizer
        self.ids: list[list[int]] = tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
        too_long = [i for i, ids in enumerate(self.ids) if len(ids) > max_length]
        if too_long:  # re-tokenise only those, so special tokens such as [SEP] are kept
            cut = tokenizer([texts[i] for i in too_long], truncation=True, max_length=max_length)["input_ids"]
            for i, ids in zip(too_long, cut):
                self.ids[i] = ids
        self.n_truncated = len(too_long)
        self.lengths = np.array([len(ids) for ids in self.ids], dtype=np.int64)
        if (self.lengths == 0).any():
            i = int(np.argmax(self.lengths == 0))
            raise LayerscopeError(f"input {i} ({texts[i]!r}) has no tokens; remove it")
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.forward_module = model.forward_module or model.module
        self.forward_kwargs = {"use_cache": False} if model.is_causal_lm else {}
        self.device = model.device

    def batch(self, indices: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        width = int(self.lengths[indices].max())
        input_ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            ids = self.ids[i]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}
        return inputs, mask

    def forward(self, inputs) -> None:
        self.forward_module(**inputs, **self.forward_kwargs)


class ModuleFeeder:
    """Inputs turned into tensors by the model's own `preprocess` (images, plain modules)."""

    def __init__(self, model: LoadedModel, dataset: Dataset) -> None:
        self.model = model
        self.dataset = dataset
        self.lengths = np.ones(len(dataset), dtype=np.int64)
        self.n_truncated = 0
        self.device = model.device

    def batch(self, indices: np.ndarray):
        if self.dataset.modality == "image":
            raw = self.dataset.load_images(indices)
        else:
            raw = [self.dataset.texts[i] for i in indices]
        prepared = self.model.preprocess(raw)
        mask = None
        if isinstance(prepared, dict):
            prepared = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in prepared.items()}
            mask = prepared.get("attention_mask")
        else:
            prepared = prepared.to(self.device)
        return prepared, mask

    def forward(self, inputs) -> None:
        module = self.model.forward_module or self.model.module
        if isinstance(inputs, dict):
            module(**inputs)
        else:
            module(inputs)
