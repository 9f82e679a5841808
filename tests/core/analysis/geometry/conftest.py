"""Shared fixtures of the geometry tests: point clouds of known dimension and a tokens run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.activations import Activations
from core.analysis.geometry import _rows


def _embed(Y: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Y (n, k) placed in `dim` dimensions by a random orthonormal map."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, Y.shape[1])))  # (dim, k)
    return Y @ basis.T


def _subspace_points(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Isotropic Gaussian on a random k-dim linear subspace of R^384."""
    return _embed(rng.standard_normal((n, k)), 384, rng)


def _sphere_points(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on the k-sphere S^k (in R^{k+1}), randomly rotated into R^384."""
    Y = rng.standard_normal((n, k + 1))
    return _embed(Y / np.linalg.norm(Y, axis=1, keepdims=True), 384, rng)


def _orthogonal_equal_variance(k: int, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n x d data whose centred version has exactly k equal singular values."""
    scores = rng.standard_normal((n, k))
    scores -= scores.mean(axis=0)
    scores, _ = np.linalg.qr(scores)  # orthonormal, zero-mean columns
    return 5.0 * _embed(scores, d, rng) + 2.0


def _offsets(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


@pytest.fixture
def small_chunks(monkeypatch):
    """Force many chunks so chunk boundaries are exercised on small data."""
    monkeypatch.setattr(_rows, "CHUNK_BYTES", 4096)


@pytest.fixture
def subspace_points() -> Callable[[int, int, np.random.Generator], np.ndarray]:
    """subspace_points(k, n, rng): isotropic Gaussian on a random k-dim linear subspace of R^384."""
    return _subspace_points


@pytest.fixture
def sphere_points() -> Callable[[int, int, np.random.Generator], np.ndarray]:
    """sphere_points(k, n, rng): uniform on the k-sphere, randomly rotated into R^384."""
    return _sphere_points


@pytest.fixture
def orthogonal_equal_variance() -> Callable[[int, int, int, np.random.Generator], np.ndarray]:
    """orthogonal_equal_variance(k, n, d, rng): n x d data with exactly k equal centred singular values."""
    return _orthogonal_equal_variance


@pytest.fixture
def offsets_of() -> Callable[[list[int]], np.ndarray]:
    """offsets_of(lengths): (n_inputs + 1,) row offsets of inputs with these token counts."""
    return _offsets


@pytest.fixture
def tokens_run(write_run) -> Callable[[Path, np.random.Generator], tuple[Activations, np.ndarray]]:
    """tokens_run(tmp_path, rng): a 3-layer tokens run of 62 inputs (two too short, one constant layer)."""

    def build(tmp_path: Path, rng: np.random.Generator) -> tuple[Activations, np.ndarray]:
        lengths = list(rng.integers(3, 12, size=60)) + [2, 1]  # two inputs too short for curvature
        offsets = _offsets(lengths)
        layers = {
            "embed": rng.standard_normal((offsets[-1], 16)).astype(np.float32),
            "block.0": np.cumsum(rng.standard_normal((offsets[-1], 16)), axis=0).astype(np.float32),
            "block.1": np.full((offsets[-1], 16), 0.5, dtype=np.float32),  # constant layer
        }
        return write_run(tmp_path / "runA", layers, pooling="tokens", offsets=offsets), offsets

    return build
