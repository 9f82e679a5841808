"""Layers as float64 tensors, centred: the input every similarity metric starts from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.analysis.arrays import as_float64
from core.errors import LayerscopeError

NON_FINITE_HINT = "float16 overflow, or inputs without tokens in a tokens run?"


def as_tensor(X: Any, name: str, device: torch.device) -> torch.Tensor:
    """X (n, d) as a float64 tensor on `device` (-0.0 becomes 0.0); raises on bad shape or NaN/inf."""
    values = as_float64(X, name, "similarity metrics", NON_FINITE_HINT)
    if values.shape[1] == 0:
        raise LayerscopeError(f"{name} has no features (shape {values.shape})")
    return torch.from_numpy(values).to(device)


def check_rows(n: int, min_rows: int, metric: str) -> None:
    """Raise unless there are at least `min_rows` inputs."""
    if n < min_rows:
        raise LayerscopeError(f"{metric} needs at least {min_rows} inputs; got n={n}")


def centre(X: torch.Tensor) -> torch.Tensor:
    """X minus its column means, in place (X is always `as_tensor`'s own copy).

    Constant columns become exactly 0: a float mean of n copies of c need not equal c, and
    the round-off residue would otherwise look like signal.
    """
    constant = X.amin(dim=0) == X.amax(dim=0)
    return X.sub_(torch.where(constant, X[0], X.mean(dim=0)))


def constant_error(name: str, n: int, why: str) -> LayerscopeError:
    """The error for a layer whose inputs all have the same activations."""
    return LayerscopeError(f"{name} is constant: all {n} inputs have the same activations, so {why}")


@dataclass(frozen=True)
class Centred:
    """Centred features reduced to r = min(n, d) columns with the same Gram: P P^T = Xc Xc^T."""

    P: torch.Tensor  # (n, r)
    ssr: torch.Tensor  # (n,) squared row norms = diag of the centred Gram


def centred(X: torch.Tensor, name: str, why: str = "CKA is 0/0") -> Centred:
    """X (n, d) centred and, when d > n, reduced to n columns; raises for constant X."""
    n, d = X.shape
    Xc = centre(X)
    if d > n:  # Xc^T = Q R: Xc = R^T Q^T, so R^T keeps every inner product between rows
        Xc = torch.linalg.qr(Xc.T, mode="r").R.T  # (n, n)
    ssr = torch.linalg.vector_norm(Xc, dim=1).square()
    if not bool((ssr > 0).any()):
        raise constant_error(name, n, why)
    return Centred(Xc, ssr)
