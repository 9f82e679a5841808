"""Fixtures every analysis test may use: a seeded generator, one torch thread and run folders written by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.activations import Activations


def _write_run(
    folder: Path,
    layers: dict[str, np.ndarray],
    table: pd.DataFrame | None = None,
    *,
    pooling: str = "mean",
    offsets: np.ndarray | None = None,
    fingerprint: str | None = "fp0",
    model: str = "toy",
) -> Activations:
    """A minimal complete run folder (layers, optional label table and token offsets) read back as Activations."""
    (folder / "layers").mkdir(parents=True)
    files = {}
    for i, (name, array) in enumerate(layers.items()):
        files[name] = f"layers/{i:03d}.npy"
        np.save(folder / files[name], array)
    dataset: dict = {"name": "toy"}
    if fingerprint is not None:
        dataset["fingerprint"] = fingerprint
    if table is not None:
        table.to_parquet(folder / "table.parquet")
        dataset["label_columns"] = list(table.columns)
    if offsets is not None:
        np.save(folder / "offsets.npy", offsets)
        np.save(folder / "lengths.npy", np.diff(offsets))
        n_inputs = len(offsets) - 1
    else:
        n_inputs = len(table) if table is not None else len(next(iter(layers.values())))
    meta = {
        "layers": list(layers),
        "layer_files": files,
        "pooling": pooling,
        "n_inputs": n_inputs,
        "dims": {name: int(a.shape[1]) for name, a in layers.items()},
        "model": {"name": model, "modality": "text"},
        "dataset": dataset,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return Activations(folder, meta)


@pytest.fixture
def write_run() -> Callable[..., Activations]:
    """write_run(folder, layers, table=None, *, pooling="mean", offsets=None, fingerprint="fp0", model="toy")."""
    return _write_run


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_thread():
    """Small matrices are faster on one thread; with two on a busy 2-core machine they are much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
