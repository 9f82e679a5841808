"""The spectrum of a layer's centred Gram matrix and what is read from it: matrix entropy,
effective rank and anisotropy.

* matrix entropy: Rényi alpha-entropy of the trace-normalised Gram matrix of centred,
  unit-norm rows (repitl ``matrixAlphaEntropy``), normalised by log(min(n, d)). Variant
  "exact" (default) uses the Gram spectrum as it is; "skean" clamps the Gram matrix's
  entries at 0 first, as OFSkean/information_flow ``compute_entropy`` does.
* effective rank (Roy & Vetterli 2007) and anisotropy (Ethayarajh 2019 mean cosine;
  top-eigenvalue share of the covariance).

Gram eigenvalues are computed in float64 with torch (on CUDA when present).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from core.analysis.arrays import as_float64, as_matrix
from core.analysis.geometry import _rows
from core.device import pick_device
from core.errors import LayerscopeError
from core.validation import check_choice, check_int, check_number

ENTROPY_VARIANTS = ("exact", "skean")


def gram_spectrum(
    X: np.ndarray, *, unit_rows: bool, device: torch.device, name: str = "X", clamp: bool = False
) -> np.ndarray:
    """Eigenvalues (m,) >= 0 of the Gram matrix of the centred (optionally unit-norm) rows of X (n, d).

    Uses Z Z^T (n x n) when n <= d, else Z^T Z (d x d): same non-zero spectrum. With `clamp`,
    negative entries of that Gram matrix are set to 0 before the eigendecomposition (the
    "skean" entropy; the spectrum then depends on the side). Negative eigenvalues are dropped
    and those below m * eps * max are round-off of the float64 Gram, set to 0.
    """
    n, d = X.shape
    if n == 0 or d == 0:
        raise LayerscopeError(f"{name} is empty (shape {(n, d)}); it needs at least one row and one feature")
    mean = _rows.column_mean(X, device, name)
    if n <= d:
        Z = torch.cat([_rows.prepare_rows(_rows.load_rows(X, a, b, device, name), mean, unit_rows)
                       for a, b in _rows.row_chunks(n, d)])
        gram = Z @ Z.T  # (n, n)
    else:
        gram = torch.zeros((d, d), dtype=torch.float64, device=device)
        for start, stop in _rows.row_chunks(n, d):
            Zc = _rows.prepare_rows(_rows.load_rows(X, start, stop, device, name), mean, unit_rows)
            gram += Zc.T @ Zc  # (d, d)
    if clamp:
        gram = gram.clamp(min=0.0)
    return clean_spectrum(torch.linalg.eigvalsh(gram).cpu().numpy())


def clean_spectrum(eig: np.ndarray) -> np.ndarray:
    """Clip negatives and zero out eigenvalues at round-off level, per row of (..., m)."""
    eig = np.clip(eig, 0.0, None)
    cutoff = eig.shape[-1] * np.finfo(np.float64).eps * eig.max(axis=-1, keepdims=True)
    return np.where(eig > cutoff, eig, 0.0)


def renyi_entropy(eig: np.ndarray, alpha: float) -> np.ndarray:
    """(...,) Rényi alpha-entropy (nats) of spectra (..., m) after trace-normalisation.

    Rows whose spectrum is all zero give NaN. Written as log1p(sum p expm1((alpha-1) log p))
    / (1 - alpha) so alpha near 1 is as accurate as the Shannon limit used at alpha == 1.
    """
    total = eig.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = eig / total
    positive = p > 0
    log_p = np.log(p, where=positive, out=np.zeros_like(p))
    if alpha == 1.0:
        entropy = -(p * log_p).sum(axis=-1, where=positive)
    else:
        t = alpha - 1.0
        entropy = np.log1p((p * np.expm1(t * log_p)).sum(axis=-1, where=positive)) / -t
    return np.where(total[..., 0] > 0, entropy, np.nan)


def check_alpha(alpha: Any) -> float:
    """The Rényi order as a float > 0 (1 = the Shannon limit)."""
    return check_number("alpha", alpha, low=0, low_open=True)


def check_entropy_variant(name: str, variant: Any) -> str:
    """The matrix-entropy convention: "exact" or "skean" (Gram entries clamped at 0)."""
    return check_choice(name, variant, ENTROPY_VARIANTS)


def matrix_entropy(
    X: Any,
    *,
    alpha: float = 1.0,
    variant: str = "exact",
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> float:
    """Rényi alpha matrix entropy of the rows of X (Skean et al.; repitl matrixAlphaEntropy).

    X: (n, d). Centre, unit-normalise rows, Gram on the smaller side (d x d when n > d, else
    n x n), divide by its trace; H = log(sum lambda^alpha) / (1 - alpha) over the eigenvalues
    > 0, Shannon at alpha = 1. With `normalize`, divided by log(min(n, d)) so it lies in [0, 1].
    variant="exact" (default): the spectrum of the Gram matrix itself, the same on either side.
    variant="skean": its negative entries are clamped to 0 before the eigendecomposition, as
    OFSkean/information_flow `compute_entropy` does (``torch.clamp(cov, min=0)``).
    Rows equal to the mean contribute nothing. Raises LayerscopeError for constant activations.
    """
    alpha = check_alpha(alpha)
    variant = check_entropy_variant("variant", variant)
    array = as_matrix(X)
    n, d = array.shape
    if normalize and min(n, d) < 2:
        raise LayerscopeError(f"normalised matrix entropy needs at least 2 rows and 2 features; X has shape {(n, d)}")
    eig = gram_spectrum(array, unit_rows=True, device=pick_device(device), clamp=variant == "skean")
    if eig.sum() == 0:
        raise LayerscopeError(
            f"matrix entropy is undefined: all {n} rows of X are identical (constant activations), "
            "so the centred data is zero"
        )
    entropy = float(renyi_entropy(eig, alpha)) + 0.0  # + 0.0: report 0.0, not -0.0
    return entropy / math.log(min(n, d)) if normalize else entropy


def effective_rank_from_spectrum(eig: np.ndarray, n: int) -> float:
    """exp of the Shannon entropy of the normalised singular values sqrt(eig) of n rows."""
    singular = np.sqrt(eig)
    if singular.sum() == 0:
        raise LayerscopeError(
            f"effective rank is undefined: all {n} rows of X are identical (constant activations)"
        )
    return float(np.exp(renyi_entropy(singular, 1.0)))


def top_share_from_spectrum(eig: np.ndarray, n: int) -> float:
    """Largest eigenvalue over their sum (the top covariance direction's share of variance)."""
    if eig.sum() == 0:
        raise LayerscopeError(
            f"top-eigenvalue share is undefined: all {n} rows of X are identical, so the covariance is zero"
        )
    return float(eig.max() / eig.sum())


def effective_rank(X: Any, *, device: str | torch.device | None = None) -> float:
    """Roy & Vetterli effective rank: exp of the Shannon entropy of the normalised singular
    values of the centred X (n, d). Between 1 and min(n, d); raises for constant X.
    Singular values below sqrt(m eps) of the largest are Gram round-off and count as 0."""
    array = as_matrix(X)
    return effective_rank_from_spectrum(gram_spectrum(array, unit_rows=False, device=pick_device(device)), len(array))


def mean_cosine(X: np.ndarray, n_pairs: int, seed: int) -> float:
    """Mean cosine of random pairs of distinct non-zero rows of X (n, d) (all pairs when that is fewer)."""
    n, d = X.shape
    norms = np.concatenate([np.linalg.norm(as_float64(X[a:b], "X", _rows.WHAT), axis=1)
                            for a, b in _rows.row_chunks(n, d)])
    usable = np.flatnonzero(norms > 0)
    if len(usable) < 2:
        raise LayerscopeError(
            f"mean cosine needs at least 2 non-zero rows; X has {n} rows and {len(usable)} non-zero"
        )
    m = len(usable)
    if m * (m - 1) // 2 <= n_pairs:
        first, second = np.triu_indices(m, k=1)
    else:
        rng = np.random.default_rng(seed)
        first = rng.integers(0, m, size=n_pairs)
        second = (first + rng.integers(1, m, size=n_pairs)) % m  # uniform over the other rows
    total = 0.0
    step = max(1, _rows.CHUNK_BYTES // (16 * d))
    for start in range(0, len(first), step):
        a, b = usable[first[start : start + step]], usable[second[start : start + step]]
        rows_a, rows_b = as_float64(X[a], "X", _rows.WHAT), as_float64(X[b], "X", _rows.WHAT)
        total += float(np.sum(np.einsum("ij,ij->i", rows_a, rows_b) / (norms[a] * norms[b])))
    return total / len(first)


def anisotropy(
    X: Any, *, n_pairs: int = 10_000, seed: int = 0, device: str | torch.device | None = None
) -> dict[str, float]:
    """Anisotropy of the rows of X (n, d).

    Returns {"mean_cosine": mean cosine similarity of `n_pairs` random pairs of distinct
    rows, uncentred (Ethayarajh 2019; all pairs when there are fewer; zero rows left out),
    "top_eigenvalue_share": largest covariance eigenvalue / sum (LLM-Microscope)}.
    Raises LayerscopeError for constant X (zero covariance).
    """
    n_pairs = check_int("n_pairs", n_pairs, low=1)
    array = as_matrix(X)
    share = top_share_from_spectrum(gram_spectrum(array, unit_rows=False, device=pick_device(device)), len(array))
    return {"mean_cosine": mean_cosine(array, n_pairs, seed), "top_eigenvalue_share": share}
