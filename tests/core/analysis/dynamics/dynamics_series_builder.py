"""A checkpoint series of the digits MLP built in the test: trained here, one run per saved checkpoint."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

import core
from core.models.bundled import DigitsPreprocess, digits_mlp
from core.series import Series, save_series
from core.store import Store


def train_checkpoints(epochs: int, *, seed: int = 0) -> list[nn.Module]:
    """The digits MLP at initialisation and after each epoch (Adam, lr 1e-2, batches of 128, as digits-mlp)."""
    from core.data.demo import load_demo

    dataset = load_demo("demo:digits")
    x = torch.from_numpy(dataset.images.reshape(len(dataset), 64).astype(np.float32) / 255.0)
    y = torch.tensor([int(d) for d in dataset.table["digit"]])
    generator = torch.Generator().manual_seed(seed)
    model = digits_mlp(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    saved = [copy.deepcopy(model).eval()]
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 128):
            batch = order[start : start + 128]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        saved.append(copy.deepcopy(model).eval())
    return saved


def digits_series(store: Store, *, epochs: int = 2, limit: int = 100, layers: str = "fc1,fc2,logits",
                  steps: Sequence[float] | None = None) -> Series:
    """Every checkpoint of `train_checkpoints(epochs)` extracted on `limit` bundled digits, linked as a series."""
    dataset = core.load_dataset("demo:digits", limit=limit)
    keys, labels = [], []
    for epoch, module in enumerate(train_checkpoints(epochs)):
        loaded = core.load_model(module, preprocess=DigitsPreprocess(), modality="image", device="cpu")
        loaded = dataclasses.replace(loaded, name=f"digits-mlp epoch {epoch}")
        keys.append(core.extract(loaded, dataset, layers=layers, store=store).key)
        labels.append(f"epoch {epoch}")
    values = list(steps) if steps is not None else list(range(len(keys)))
    return save_series(store, name="digits-mlp (test)", model="digits-mlp checkpoints", steps=labels,
                       run_keys=keys, step_values=values)
