"""Shared fixtures of the similarity tests: random rotations and toy "models"."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


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
