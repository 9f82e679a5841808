"""Shared fixtures of the projection tests: planar point clouds and rotations."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _plane(n: int = 300, d: int = 40, seed: int = 0) -> np.ndarray:
    """Points on a random 2-D plane through the origin of R^d, with unequal spreads."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]  # (d, 2) orthonormal
    return (rng.normal(size=(n, 2)) * [3.0, 1.0]) @ basis.T


def _rotation(d: int, seed: int) -> np.ndarray:
    """A random (d, d) orthogonal matrix."""
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


@pytest.fixture()
def plane() -> Callable[..., np.ndarray]:
    return _plane


@pytest.fixture()
def rotation() -> Callable[[int, int], np.ndarray]:
    return _rotation
