"""Shared fixtures of the projection tests: planar point clouds, rotations and run folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.activations import Activations


def _plane(n: int = 300, d: int = 40, seed: int = 0) -> np.ndarray:
    """Points on a random 2-D plane through the origin of R^d, with unequal spreads."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]  # (d, 2) orthonormal
    return (rng.normal(size=(n, 2)) * [3.0, 1.0]) @ basis.T


def _rotation(d: int, seed: int) -> np.ndarray:
    """A random (d, d) orthogonal matrix."""
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


def _write_run(folder: Path, layers: dict[str, np.ndarray]) -> Activations:
    """A minimal complete pooled run folder read back as Activations."""
    (folder / "layers").mkdir(parents=True)
    files = {}
    for i, (name, array) in enumerate(layers.items()):
        files[name] = f"layers/{i:03d}.npy"
        np.save(folder / files[name], array)
    meta = {
        "layers": list(layers),
        "layer_files": files,
        "pooling": "mean",
        "n_inputs": len(next(iter(layers.values()))),
        "dims": {name: int(a.shape[1]) for name, a in layers.items()},
        "model": {"name": "toy", "modality": "text"},
        "dataset": {"name": "toy"},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return Activations(folder, meta)


@pytest.fixture()
def plane() -> Callable[..., np.ndarray]:
    return _plane


@pytest.fixture()
def rotation() -> Callable[[int, int], np.ndarray]:
    return _rotation


@pytest.fixture()
def write_run() -> Callable[..., Activations]:
    return _write_run
