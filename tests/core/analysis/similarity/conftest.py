"""Shared fixtures of the similarity tests: a seeded generator, toy "models" and run folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.activations import Activations


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((d, d)))[0]


def _related(X: np.ndarray, d: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """A noisy random linear read-out of X with d features."""
    return X @ rng.standard_normal((X.shape[1], d)) + noise * rng.standard_normal((len(X), d))


def _layers(rng: np.random.Generator, n: int = 60, widths=(8, 12, 16)) -> dict[str, np.ndarray]:
    """A toy 'model': each layer a noisy transform of the previous one."""
    X = rng.standard_normal((n, widths[0]))
    out = {}
    for i, d in enumerate(widths):
        X = np.tanh(_related(X, d, 0.3, rng))
        out[f"layer{i}"] = X
    return out


def _write_run(
    folder: Path, layers: dict[str, np.ndarray], *, fingerprint: str | None = "fp0", model: str = "toy",
    pooling: str = "mean", offsets: np.ndarray | None = None,
) -> Activations:
    """A minimal complete run folder read back as Activations."""
    (folder / "layers").mkdir(parents=True)
    files = {}
    for i, (name, array) in enumerate(layers.items()):
        files[name] = f"layers/{i:03d}.npy"
        np.save(folder / files[name], array.astype(np.float32))
    if offsets is not None:
        np.save(folder / "offsets.npy", offsets)
        np.save(folder / "lengths.npy", np.diff(offsets))
    n_inputs = len(offsets) - 1 if offsets is not None else len(next(iter(layers.values())))
    dataset = {"name": "toy"} if fingerprint is None else {"name": "toy", "fingerprint": fingerprint}
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
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def orthogonal() -> Callable[[int, np.random.Generator], np.ndarray]:
    """orthogonal(d, rng): a random (d, d) rotation."""
    return _orthogonal


@pytest.fixture
def related() -> Callable[..., np.ndarray]:
    """related(X, d, noise, rng): a noisy random linear read-out of X with d features."""
    return _related


@pytest.fixture
def toy_layers() -> Callable[..., dict[str, np.ndarray]]:
    """toy_layers(rng, n=60, widths=(8, 12, 16)): {layer: (n, width)}, each a noisy map of the one before."""
    return _layers


@pytest.fixture
def write_run() -> Callable[..., Activations]:
    """write_run(folder, layers, *, fingerprint="fp0", model="toy", pooling="mean", offsets=None)."""
    return _write_run
