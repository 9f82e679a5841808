"""Geometry of one layer: trajectory curvature, intrinsic dimension, matrix entropy,
effective rank and anisotropy, computed for every layer of a run.

Definitions follow /work/shared/METRICS.md, section "Geometry of one layer":

* curvature: Hosseini & Fedorenko 2023 (``variant="signed"``, default) and Skean et
  al. 2024 (``variant="abs"``, angles of |v_{k+1}.v_k|, bounded by pi/2). Radians.
* intrinsic dimension: TwoNN as dadapy ``compute_id_2NN`` (duplicates removed, lowest
  90% of mu, least squares through the origin) or the maximum-likelihood form.
* matrix entropy: Rényi alpha-entropy of the trace-normalised Gram matrix of centred,
  unit-norm rows (repitl ``matrixAlphaEntropy``), normalised by log(min(n, d)).
* effective rank (Roy & Vetterli 2007) and anisotropy (Ethayarajh 2019 mean cosine;
  top-eigenvalue share of the covariance).

Conventions for data where a metric is undefined (never a silent number):

* the single-matrix functions raise `LayerscopeError` naming the problem (constant
  activations, too few distinct points, non-finite values);
* the per-input batch functions return NaN for inputs where the metric is undefined
  (fewer than 3 tokens or only zero-length steps for curvature; fewer than 2 distinct
  tokens for prompt entropy) and the caller counts them;
* `geometry_by_layer` turns both into NaN plus a reason in `GeometryResult.reasons`.

Pairwise distances and Gram eigenvalues run in torch (on CUDA when present);
spectra are computed in float64, nearest-neighbour candidates are found in float32
and their distances recomputed exactly in float64.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.activations import Activations
from core.analysis.arrays import as_matrix
from core.device import pick_device
from core.errors import LayerscopeError
from core.store import Store

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

GEOMETRY_VERSION = 1  # bump when a formula or convention changes: invalidates cached results

# name accepted in `metrics` -> what it measures (feeds a dropdown)
GEOMETRY_METRICS: dict[str, str] = {
    "curvature": "mean turning angle of each input's token trajectory (radians), averaged over inputs",
    "intrinsic_dimension": "TwoNN (or MLE) intrinsic dimension of the pooled vectors",
    "dataset_entropy": "normalised Rényi matrix entropy of the pooled vectors of all inputs",
    "prompt_entropy": "normalised Rényi matrix entropy over the tokens of one input, averaged over inputs",
    "effective_rank": "Roy & Vetterli effective rank of the centred pooled vectors",
    "anisotropy": "mean cosine of random pairs of pooled vectors and top-eigenvalue share of their covariance",
}
# name in `metrics` -> metric names in the result
RESULT_METRICS: dict[str, tuple[str, ...]] = {
    "curvature": ("curvature",),
    "intrinsic_dimension": ("intrinsic_dimension",),
    "dataset_entropy": ("dataset_entropy",),
    "prompt_entropy": ("prompt_entropy",),
    "effective_rank": ("effective_rank",),
    "anisotropy": ("anisotropy_mean_cosine", "anisotropy_top_eigenvalue_share"),
}
METRIC_UNITS: dict[str, str] = {
    "curvature": "radians",
    "intrinsic_dimension": "dimensions",
    "dataset_entropy": "fraction of log(min(n, d))",
    "prompt_entropy": "fraction of log(min(T, d))",
    "effective_rank": "dimensions",
    "anisotropy_mean_cosine": "cosine",
    "anisotropy_top_eigenvalue_share": "fraction of variance",
}
PER_INPUT_METRICS = ("curvature", "prompt_entropy")
CURVATURE_VARIANTS = ("signed", "abs")
ID_METHODS = ("twonn", "mle")
MIN_ID_POINTS = 20
DEFAULT_OPTIONS: dict[str, Any] = {
    "curvature_variant": "signed",  # "signed" (Hosseini, default) or "abs" (Skean)
    "id_method": "twonn",  # "twonn" (linear fit, dadapy default) or "mle"
    "id_fraction": 0.9,  # share of smallest mu kept by the TwoNN fit
    "entropy_alpha": 1.0,  # Rényi order of dataset and prompt entropy
    "entropy_normalize": True,  # divide entropies by log(min(n, d))
    "anisotropy_n_pairs": 10_000,  # random row pairs for the mean cosine
    "device": None,  # torch device; None = CUDA when present (not part of the cache key)
}

_CHUNK_BYTES = 32 * 2**20  # float64 working set per block of rows
_ID_CANDIDATES = 8  # float32 neighbour candidates re-ranked with exact float64 distances

ProgressCallback = Callable[[int, int, str], None]


# ----- input checks and shared helpers ------------------------------------------
def _as_float64(block: np.ndarray, name: str) -> np.ndarray:
    """A float64 copy of `block` (-0.0 becomes 0.0), raising on NaN or inf."""
    out = np.array(block, dtype=np.float64)
    out += 0.0
    if not np.isfinite(out).all():
        raise LayerscopeError(_non_finite_message(name, int(out.size - np.isfinite(out).sum())))
    return out


def _load_rows(X: np.ndarray, start: int, stop: int, device: torch.device, name: str) -> torch.Tensor:
    """Rows start:stop of X (array or memmap) as a float64 tensor on `device`; raises on NaN or inf."""
    block = torch.from_numpy(np.array(X[start:stop])).to(device=device, dtype=torch.float64)
    finite = torch.isfinite(block)
    if not bool(finite.all()):
        raise LayerscopeError(_non_finite_message(name, int((~finite).sum())))
    return block + 0.0  # -0.0 -> 0.0


def _non_finite_message(name: str, count: int) -> str:
    return (
        f"{name} has {count} non-finite values (NaN or inf); geometry metrics need finite activations "
        "(float16 overflow? extract in float32)"
    )


def _row_chunks(n_rows: int, d: int) -> Iterator[tuple[int, int]]:
    step = max(1, _CHUNK_BYTES // max(1, 8 * d))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def _exact_mean(block: torch.Tensor) -> torch.Tensor:
    """(d,) column mean of a (rows, d) float64 block; constant columns get their exact value.

    A float mean of n copies of c need not equal c; centring constant data would then
    leave round-off residue that unit-normalisation blows up into random directions.
    """
    constant = block.amin(dim=0) == block.amax(dim=0)
    return torch.where(constant, block[0], block.mean(dim=0))


def _column_mean(X: np.ndarray, device: torch.device, name: str) -> torch.Tensor:
    """(d,) exact-for-constant-columns mean of X, read in chunks (X may be a memmap)."""
    n, d = X.shape
    total = torch.zeros(d, dtype=torch.float64, device=device)
    low = torch.full((d,), math.inf, dtype=torch.float64, device=device)
    high = torch.full((d,), -math.inf, dtype=torch.float64, device=device)
    for start, stop in _row_chunks(n, d):
        block = _load_rows(X, start, stop, device, name)
        total += block.sum(dim=0)
        low = torch.minimum(low, block.amin(dim=0))
        high = torch.maximum(high, block.amax(dim=0))
    return torch.where(low == high, low, total / n)


def _prepare_rows(block: torch.Tensor, mean: torch.Tensor, unit_rows: bool) -> torch.Tensor:
    """Centre and optionally unit-normalise rows of a float64 block; zero rows stay zero."""
    block = block - mean
    if unit_rows:
        norms = torch.linalg.vector_norm(block, dim=1, keepdim=True)
        block = torch.where(norms > 0, block / torch.where(norms > 0, norms, 1.0), 0.0)
    return block


def _gram_spectrum(X: np.ndarray, *, unit_rows: bool, device: torch.device, name: str = "X") -> np.ndarray:
    """Eigenvalues (m,) >= 0 of the Gram matrix of the centred (optionally unit-norm) rows.

    Uses Z Z^T (n x n) or Z^T Z (d x d), whichever is smaller: same non-zero spectrum.
    Eigenvalues below m * eps * max are round-off of the float64 Gram and set to 0.
    """
    n, d = X.shape
    if n == 0 or d == 0:
        raise LayerscopeError(f"{name} is empty (shape {(n, d)}); it needs at least one row and one feature")
    mean = _column_mean(X, device, name)
    if n <= d:
        Z = torch.cat([_prepare_rows(_load_rows(X, a, b, device, name), mean, unit_rows) for a, b in _row_chunks(n, d)])
        gram = Z @ Z.T  # (n, n)
    else:
        gram = torch.zeros((d, d), dtype=torch.float64, device=device)
        for start, stop in _row_chunks(n, d):
            Zc = _prepare_rows(_load_rows(X, start, stop, device, name), mean, unit_rows)
            gram += Zc.T @ Zc  # (d, d)
    return _clean_spectrum(torch.linalg.eigvalsh(gram).cpu().numpy())


def _clean_spectrum(eig: np.ndarray) -> np.ndarray:
    """Clip negatives and zero out eigenvalues at round-off level, per row of (..., m)."""
    eig = np.clip(eig, 0.0, None)
    cutoff = eig.shape[-1] * np.finfo(np.float64).eps * eig.max(axis=-1, keepdims=True)
    return np.where(eig > cutoff, eig, 0.0)


def _renyi_entropy(eig: np.ndarray, alpha: float) -> np.ndarray:
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


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise LayerscopeError(f"alpha={alpha!r} must be a positive finite number")
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise LayerscopeError(f"alpha={alpha!r} must be a positive finite number (1 = Shannon limit)")
    return alpha


def _check_variant(variant: str) -> str:
    if variant not in CURVATURE_VARIANTS:
        raise LayerscopeError(f"variant={variant!r} is not a curvature variant; choose one of {CURVATURE_VARIANTS}")
    return variant


def _check_offsets(offsets: Any, n_rows: int) -> np.ndarray:
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or offsets.size < 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise LayerscopeError(f"offsets must be a 1-D integer array (n_inputs + 1,); got shape {offsets.shape}, "
                              f"dtype {offsets.dtype}")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != n_rows or np.any(np.diff(offsets) < 0):
        raise LayerscopeError(
            f"offsets must start at 0, never decrease and end at the number of token rows ({n_rows}); "
            f"got start {offsets[0]}, end {offsets[-1]}"
        )
    return offsets


def _input_chunks(offsets: np.ndarray, d: int) -> Iterator[tuple[int, int]]:
    """Ranges [i0, i1) of whole inputs whose rows fit the chunk budget (at least one input)."""
    limit = max(1, _CHUNK_BYTES // max(1, 8 * d))
    n = len(offsets) - 1
    i0 = 0
    while i0 < n:
        i1 = int(np.searchsorted(offsets, offsets[i0] + limit, side="right")) - 1
        i1 = min(n, max(i1, i0 + 1))
        yield i0, i1
        i0 = i1


# ----- trajectory curvature ------------------------------------------------------
def _block_angles(rows: torch.Tensor, input_ids: np.ndarray, variant: str) -> np.ndarray:
    """(rows - 2,) turning angle at each interior row of a float64 block, NaN where undefined.

    The angle at row r is between steps r-1 -> r and r -> r+1; it is NaN when either
    step crosses an input boundary or has zero length (identical consecutive tokens).
    """
    if len(rows) < 3:
        return np.empty(0)
    steps = torch.diff(rows, dim=0)  # (rows - 1, d)
    norms = torch.linalg.vector_norm(steps, dim=1)  # (rows - 1,)
    dots = torch.einsum("ij,ij->i", steps[1:], steps[:-1])  # (rows - 2,)
    cos = (dots / (norms[1:] * norms[:-1])).clamp(-1.0, 1.0)  # NaN/inf at zero steps: masked below
    angles = torch.arccos(cos)
    # arccos loses precision near 0 and pi; Kahan's formula there: 2 atan2(|a - b|, |a + b|), unit a, b
    sharp = torch.nonzero(cos.abs() > 0.9999).squeeze(1)
    if sharp.numel():
        a = steps[sharp] / norms[sharp, None]
        b = steps[sharp + 1] / norms[sharp + 1, None]
        angles[sharp] = 2.0 * torch.atan2(
            torch.linalg.vector_norm(b - a, dim=1), torch.linalg.vector_norm(b + a, dim=1)
        )
    angles = angles.cpu().numpy()
    usable = (input_ids[1:] == input_ids[:-1]) & (norms.cpu().numpy() > 0)
    angles[~(usable[1:] & usable[:-1])] = np.nan
    if variant == "abs":  # arccos(|cos|) as in Skean et al.
        angles = np.minimum(angles, np.pi - angles)
    return angles


def turning_angles(token_vectors: Any, *, variant: str = "signed") -> np.ndarray:
    """Turning angle (radians) at each interior token of one trajectory.

    token_vectors: (T, d). Returns (T - 2,) (empty for T < 3); entry k is the angle
    between steps h_{k+1} - h_k and h_{k+2} - h_{k+1}, NaN where a step has zero length.
    """
    variant = _check_variant(variant)
    X = as_matrix(token_vectors, "token_vectors")
    rows = _load_rows(X, 0, len(X), torch.device("cpu"), "token_vectors")
    return _block_angles(rows, np.zeros(len(rows), dtype=np.int64), variant)


def curvature(token_vectors: Any, *, variant: str = "signed") -> float:
    """Mean turning angle (radians) of one token trajectory.

    token_vectors: (T, d). NaN when T < 3 or when every angle touches a zero-length
    step; angles touching a zero-length step are left out of the mean.
    """
    angles = turning_angles(token_vectors, variant=variant)
    if angles.size == 0 or np.isnan(angles).all():
        return float("nan")
    return float(np.nanmean(angles))


def curvature_per_input(
    X_tokens: Any, offsets: Any, *, variant: str = "signed", device: str | torch.device | None = None
) -> tuple[np.ndarray, int]:
    """Curvature of every input of a tokens run.

    X_tokens: (n_tokens, d), inputs concatenated; offsets: (n_inputs + 1,) row starts.
    Returns (values (n_inputs,) radians, NaN for skipped inputs; number skipped).
    Inputs are skipped when they have fewer than 3 tokens or only zero-length steps.
    """
    variant = _check_variant(variant)
    X = as_matrix(X_tokens, "X_tokens")
    offsets = _check_offsets(offsets, len(X))
    dev = pick_device(device)
    lengths = np.diff(offsets)
    values = np.full(len(lengths), np.nan)
    for i0, i1 in _input_chunks(offsets, X.shape[1]):
        rows = _load_rows(X, offsets[i0], offsets[i1], dev, "X_tokens")
        ids = np.repeat(np.arange(i1 - i0), lengths[i0:i1])
        angles = _block_angles(rows, ids, variant)
        if angles.size == 0:
            continue
        owner = ids[1:-1]
        ok = ~np.isnan(angles)
        sums = np.bincount(owner[ok], weights=angles[ok], minlength=i1 - i0)
        counts = np.bincount(owner[ok], minlength=i1 - i0)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[i0:i1] = np.where(counts > 0, sums / counts, np.nan)
    return values, int(np.isnan(values).sum())


# ----- intrinsic dimension -----------------------------------------------------------
def _two_nearest_distances(points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances (N,), (N,) of each point to its first and second nearest neighbour.

    points: (N, d) float64 tensor, distinct rows. Candidates come from float32 squared
    distances (fast, GPU-friendly); the best few are re-ranked with exact float64 differences.
    """
    n, d = points.shape
    device = points.device
    x64 = points
    x32 = x64.float()
    sq = (x32 * x32).sum(dim=1)
    k = min(_ID_CANDIDATES, n - 1)
    step = max(1, min(_CHUNK_BYTES // (4 * n), _CHUNK_BYTES // (8 * k * d)))
    nearest = torch.empty((n, 2), dtype=torch.float64, device=device)
    for start in range(0, n, step):
        stop = min(n, start + step)
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (x32[start:stop] @ x32.T)  # (b, N)
        d2[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")
        candidates = torch.topk(d2, k, dim=1, largest=False).indices  # (b, k)
        exact = torch.linalg.vector_norm(x64[start:stop, None, :] - x64[candidates], dim=2)  # (b, k)
        nearest[start:stop] = torch.topk(exact, 2, dim=1, largest=False, sorted=True).values
    out = nearest.cpu().numpy()
    return out[:, 0], out[:, 1]


def _id_from_ratios(mu: np.ndarray, method: str, fraction: float) -> float:
    """TwoNN linear fit or MLE from the ratios mu = r2 / r1 (N,)."""
    n = len(mu)
    log_mu = np.sort(np.log(mu))
    if method == "mle":
        total = float(log_mu.sum())
        if total <= 0:
            raise LayerscopeError(
                f"intrinsic_dimension (mle) is undefined: all {n} points have r2 == r1 "
                "(every point's two nearest neighbours are equally far; lattice-like data)"
            )
        return (n - 1) / total
    n_kept = int(n * fraction)
    if n_kept < 2:
        raise LayerscopeError(f"fraction={fraction} keeps {n_kept} of {n} points; the TwoNN fit needs at least 2")
    x = log_mu[:n_kept]
    y = -np.log1p(-np.arange(1, n_kept + 1) / n)  # -log(1 - F_i), F_i = i / N
    sxx = float(x @ x)
    if sxx == 0:
        raise LayerscopeError(
            f"intrinsic_dimension (twonn) is undefined: the {n_kept} kept points all have r2 == r1 "
            "(lattice-like data)"
        )
    return float(x @ y) / sxx


def intrinsic_dimension(
    X: Any, method: str = "twonn", *, fraction: float = 0.9, device: str | torch.device | None = None
) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017) of the rows of X.

    X: (n, d). Duplicate rows are removed first (dadapy); mu_i = r2 / r1 with exact
    Euclidean kNN. method="twonn": least-squares slope through the origin of
    -log(1 - i/N) against the sorted log(mu_i), keeping the lowest `fraction` of mu
    (dadapy `compute_id_2NN`, skdim `TwoNN(discard_fraction=1 - fraction)`).
    method="mle": (N - 1) / sum log(mu_i) over all points (`fraction` unused).
    Raises LayerscopeError for fewer than 20 distinct rows. Note: a uniform k-cube reads
    low from boundary effects (k=10, N=2500: about 8.2, skdim alike); a Gaussian on a k-dim
    subspace or the k-sphere give about k.
    """
    if method not in ID_METHODS:
        raise LayerscopeError(f"method={method!r} is not an intrinsic-dimension method; choose one of {ID_METHODS}")
    if not isinstance(fraction, (int, float, np.floating)) or not 0 < float(fraction) < 1:
        raise LayerscopeError(f"fraction={fraction!r} must be strictly between 0 and 1 (dadapy default 0.9)")
    array = as_matrix(X)
    points = np.unique(_as_float64(array, "X"), axis=0)
    if len(points) < MIN_ID_POINTS:
        detail = "all rows are identical" if len(points) == 1 else f"only {len(points)} are distinct"
        raise LayerscopeError(
            f"intrinsic_dimension needs at least {MIN_ID_POINTS} distinct points; X has {len(array)} rows and "
            f"{detail}"
        )
    dev = pick_device(device)
    points = torch.from_numpy(points).to(dev)
    points = points - _exact_mean(points)  # distances are translation invariant; centring helps float32
    r1, r2 = _two_nearest_distances(points)
    return float(_id_from_ratios(r2 / r1, method, float(fraction)))


# ----- entropy, effective rank, anisotropy ----------------------------------------------
def matrix_entropy(
    X: Any, *, alpha: float = 1.0, normalize: bool = True, device: str | torch.device | None = None
) -> float:
    """Rényi alpha matrix entropy of the rows of X (Skean et al.; repitl matrixAlphaEntropy).

    X: (n, d). Centre, unit-normalise rows, Gram on the smaller side, divide by its trace;
    H = log(sum lambda^alpha) / (1 - alpha), Shannon at alpha = 1. With `normalize`, divided
    by log(min(n, d)) so it lies in [0, 1]. Rows equal to the mean contribute nothing.
    Raises LayerscopeError for constant activations (all rows identical).
    """
    alpha = _check_alpha(alpha)
    array = as_matrix(X)
    n, d = array.shape
    if normalize and min(n, d) < 2:
        raise LayerscopeError(f"normalised matrix entropy needs at least 2 rows and 2 features; X has shape {(n, d)}")
    eig = _gram_spectrum(array, unit_rows=True, device=pick_device(device))
    if eig.sum() == 0:
        raise LayerscopeError(
            f"matrix entropy is undefined: all {n} rows of X are identical (constant activations), "
            "so the centred data is zero"
        )
    entropy = float(_renyi_entropy(eig, alpha)) + 0.0  # + 0.0: report 0.0, not -0.0
    return entropy / math.log(min(n, d)) if normalize else entropy


def prompt_entropy(
    X_tokens: Any,
    offsets: Any,
    *,
    alpha: float = 1.0,
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Matrix entropy over the tokens of each input (Skean et al. prompt entropy).

    X_tokens: (n_tokens, d); offsets: (n_inputs + 1,). Returns (n_inputs,); normalised by
    log(min(T_i, d)). NaN for inputs with fewer than 2 distinct tokens (undefined).
    Inputs are batched by length (zero padding adds only zero eigenvalues).
    """
    alpha = _check_alpha(alpha)
    X = as_matrix(X_tokens, "X_tokens")
    offsets = _check_offsets(offsets, len(X))
    d = X.shape[1]
    dev = pick_device(device)
    lengths = np.diff(offsets)
    values = np.full(len(lengths), np.nan)
    for i0, i1 in _input_chunks(offsets, d):
        rows = _load_rows(X, offsets[i0], offsets[i1], dev, "X_tokens")
        starts = offsets[i0:i1] - offsets[i0]
        lens = lengths[i0:i1]
        order = np.argsort(lens, kind="stable")
        pos = 0
        while pos < len(order):
            end = pos + 1
            while end < len(order) and (end - pos + 1) * lens[order[end]] * d * 8 <= _CHUNK_BYTES:
                end += 1
            group = order[pos:end]
            pos = end
            width = int(lens[group].max())
            if width < 2:
                continue
            Z = torch.zeros((len(group), width, d), dtype=torch.float64, device=dev)  # zero-padded tokens
            for b, i in enumerate(group):
                if lens[i]:
                    block = rows[starts[i] : starts[i] + lens[i]]
                    Z[b, : lens[i]] = _prepare_rows(block, _exact_mean(block), unit_rows=True)
            gram = Z @ Z.mT if width <= d else Z.mT @ Z  # (batch, m, m), m = min(width, d)
            eig = _clean_spectrum(torch.linalg.eigvalsh(gram).cpu().numpy())
            entropy = _renyi_entropy(eig, alpha)
            if normalize:
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = np.log(np.minimum(lens[group], d).astype(np.float64))
                    entropy = np.where(lens[group] >= 2, entropy / scale, np.nan)
            values[i0 + group] = entropy + 0.0
    return values


def _effective_rank_from_spectrum(eig: np.ndarray, n: int) -> float:
    singular = np.sqrt(eig)
    if singular.sum() == 0:
        raise LayerscopeError(
            f"effective rank is undefined: all {n} rows of X are identical (constant activations)"
        )
    return float(np.exp(_renyi_entropy(singular, 1.0)))


def _top_share_from_spectrum(eig: np.ndarray, n: int) -> float:
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
    return _effective_rank_from_spectrum(_gram_spectrum(array, unit_rows=False, device=pick_device(device)), len(array))


def _mean_cosine(X: np.ndarray, n_pairs: int, seed: int) -> float:
    """Mean cosine of random pairs of distinct non-zero rows (all pairs when that is fewer)."""
    n, d = X.shape
    norms = np.concatenate([np.linalg.norm(_as_float64(X[a:b], "X"), axis=1) for a, b in _row_chunks(n, d)])
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
    step = max(1, _CHUNK_BYTES // (16 * d))
    for start in range(0, len(first), step):
        a, b = usable[first[start : start + step]], usable[second[start : start + step]]
        rows_a, rows_b = _as_float64(X[a], "X"), _as_float64(X[b], "X")
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
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
        raise LayerscopeError(f"n_pairs={n_pairs!r} must be a positive integer")
    array = as_matrix(X)
    share = _top_share_from_spectrum(_gram_spectrum(array, unit_rows=False, device=pick_device(device)), len(array))
    return {"mean_cosine": _mean_cosine(array, int(n_pairs), seed), "top_eigenvalue_share": share}


# ----- all layers of a run ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GeometryResult:
    """Geometry metrics for every layer of one run.

    Arrays are (n_layers,) float64 in `layer_names` order. Per-input metrics (curvature,
    prompt_entropy) give the mean over inputs and its 25th/75th percentiles; dataset-level
    metrics have NaN q25/q75.
    """

    layer_names: tuple[str, ...]  # layers in model order
    metrics: tuple[str, ...]  # result metric names, e.g. "anisotropy_mean_cosine"
    mean: dict[str, np.ndarray]  # metric -> (n_layers,) value (mean over inputs for per-input metrics)
    q25: dict[str, np.ndarray]  # metric -> (n_layers,) 25th percentile over inputs, NaN if not per-input
    q75: dict[str, np.ndarray]  # metric -> (n_layers,) 75th percentile over inputs, NaN if not per-input
    n_skipped: dict[str, np.ndarray]  # metric -> (n_layers,) int, inputs left out (too short, empty, ...)
    reasons: dict[str, str | None]  # metric -> why some values are NaN or inputs skipped; None if none
    layer_reasons: dict[str, tuple[str | None, ...]]  # metric -> per-layer reason (None where fine)
    params: dict[str, Any]  # run, pooling, options, seed, max_points, ID subsample, version

    def to_frame(self) -> pd.DataFrame:
        """pandas DataFrame in long form: layer, metric, value, q25, q75 (one row per layer x metric)."""
        import pandas as pd

        rows = [
            {
                "layer": layer,
                "metric": metric,
                "value": float(self.mean[metric][i]),
                "q25": float(self.q25[metric][i]),
                "q75": float(self.q75[metric][i]),
            }
            for metric in self.metrics
            for i, layer in enumerate(self.layer_names)
        ]
        return pd.DataFrame(rows, columns=["layer", "metric", "value", "q25", "q75"])


def _check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in names if m not in GEOMETRY_METRICS]
    if unknown or not names:
        raise LayerscopeError(
            f"metrics={list(names)!r} must name at least one of {', '.join(GEOMETRY_METRICS)}; unknown: {unknown}"
        )
    return tuple(dict.fromkeys(names))


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise LayerscopeError(f"unknown geometry options {unknown}; allowed: {', '.join(DEFAULT_OPTIONS)}")
    filled = {**DEFAULT_OPTIONS, **options}
    _check_variant(filled["curvature_variant"])
    if filled["id_method"] not in ID_METHODS:
        raise LayerscopeError(f"id_method={filled['id_method']!r} must be one of {ID_METHODS}")
    if not isinstance(filled["id_fraction"], (int, float)) or not 0 < filled["id_fraction"] < 1:
        raise LayerscopeError(f"id_fraction={filled['id_fraction']!r} must be strictly between 0 and 1")
    filled["entropy_alpha"] = _check_alpha(filled["entropy_alpha"])
    filled["entropy_normalize"] = bool(filled["entropy_normalize"])
    n_pairs = filled["anisotropy_n_pairs"]
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
        raise LayerscopeError(f"anisotropy_n_pairs={n_pairs!r} must be a positive integer")
    return filled


def _input_means(X: np.ndarray, offsets: np.ndarray, device: torch.device) -> np.ndarray:
    """(n_inputs, d) float64 mean of each input's tokens (inputs with no tokens are NaN)."""
    lengths = np.diff(offsets)
    means = np.full((len(lengths), X.shape[1]), np.nan)
    for i0, i1 in _input_chunks(offsets, X.shape[1]):
        rows = _load_rows(X, offsets[i0], offsets[i1], device, "activations")
        ids = torch.from_numpy(np.repeat(np.arange(i1 - i0), lengths[i0:i1])).to(device)
        sums = torch.zeros((i1 - i0, X.shape[1]), dtype=torch.float64, device=device).index_add_(0, ids, rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[i0:i1] = sums.cpu().numpy() / lengths[i0:i1, None]
    return means


def _summarise_layer_reasons(layer_names: Sequence[str], reasons: Sequence[str | None]) -> str | None:
    present = [(layer, r) for layer, r in zip(layer_names, reasons) if r]
    if not present:
        return None
    distinct = {r for _, r in present}
    if len(distinct) == 1 and len(present) == len(layer_names):
        return present[0][1]
    return "; ".join(f"layer {layer}: {r}" for layer, r in present)


def _skip_reason(n_skipped: int, n_inputs: int, n_short: int, min_tokens: int, other: str) -> str | None:
    if n_skipped == 0:
        return None
    parts = []
    if n_short:
        parts.append(f"{n_short} with fewer than {min_tokens} tokens")
    if n_skipped - n_short:
        parts.append(f"{n_skipped - n_short} with {other}")
    head = "all inputs skipped" if n_skipped == n_inputs else f"{n_skipped} of {n_inputs} inputs skipped"
    return f"{head} ({', '.join(parts)})"


def geometry_by_layer(
    acts: Activations | Mapping[str, np.ndarray],
    metrics: Sequence[str] = (
        "curvature",
        "intrinsic_dimension",
        "dataset_entropy",
        "prompt_entropy",
        "effective_rank",
        "anisotropy",
    ),
    *,
    store: Store | None = None,
    progress: ProgressCallback | None = None,
    seed: int = 0,
    max_points: int = 5000,
    **options: Any,
) -> GeometryResult:
    """Geometry metrics for every layer of a run.

    acts: an `Activations` run, or {layer: (n_inputs, d) pooled array} for pooled-only use.
    Per-token metrics (curvature, prompt_entropy) need pooling="tokens"; otherwise they are
    NaN with a reason. On a tokens run the dataset-level metrics use the mean of each
    input's tokens. Intrinsic dimension uses at most `max_points` inputs, drawn with `seed`
    (the same inputs at every layer). Options (defaults in DEFAULT_OPTIONS): curvature_variant,
    id_method, id_fraction, entropy_alpha, entropy_normalize, anisotropy_n_pairs, device.
    With `store` (needs an Activations run) results are cached under kind "geometry".
    progress(done, total, message) is called after each layer x metric.
    """
    metric_names = _check_metrics(metrics)
    opts = _check_options(options)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise LayerscopeError(f"seed={seed!r} must be an integer")
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < MIN_ID_POINTS:
        raise LayerscopeError(f"max_points={max_points!r} must be an integer of at least {MIN_ID_POINTS}")
    is_run = isinstance(acts, Activations)
    if not is_run and not isinstance(acts, Mapping):
        raise LayerscopeError(f"acts must be an Activations run or a mapping layer -> array; got {type(acts).__name__}")
    layer_names = tuple(acts.layer_names if is_run else acts.keys())
    if not layer_names:
        raise LayerscopeError("acts has no layers")
    params = {
        "run": acts.key if is_run else None,
        "layers": list(layer_names),
        "pooling": acts.pooling if is_run else "pooled arrays",
        "metrics": list(metric_names),
        **{k: v for k, v in opts.items() if k != "device"},
        "seed": int(seed),
        "max_points": int(max_points),
        "version": GEOMETRY_VERSION,
    }

    def compute() -> GeometryResult:
        return _compute_geometry(acts, layer_names, metric_names, opts, int(seed), int(max_points), params, progress)

    if store is None:
        return compute()
    if not is_run:
        raise LayerscopeError("caching with store= needs an Activations run (its key names the entry); "
                              "pass store=None for a mapping of arrays")
    total = len(layer_names) * len(metric_names)
    arrays, meta = store.cached_result("geometry", params, lambda: _to_store(compute()))
    if progress is not None:
        progress(total, total, "geometry loaded")
    return _from_store(arrays, meta)


def _per_input_values(
    metric: str, X: np.ndarray, offsets: np.ndarray, opts: dict[str, Any], device: torch.device
) -> tuple[np.ndarray, str | None]:
    """(n_inputs,) values of a per-input metric (NaN = skipped) and why inputs were skipped."""
    lengths = np.diff(offsets)
    if metric == "curvature":
        values, skipped = curvature_per_input(X, offsets, variant=opts["curvature_variant"], device=device)
        return values, _skip_reason(skipped, len(values), int((lengths < 3).sum()), 3,
                                    "only zero-length steps (identical consecutive tokens)")
    values = prompt_entropy(X, offsets, alpha=opts["entropy_alpha"], normalize=opts["entropy_normalize"],
                            device=device)
    return values, _skip_reason(int(np.isnan(values).sum()), len(values), int((lengths < 2).sum()), 2,
                                "all tokens identical")


def _pooled_vectors(X: np.ndarray, offsets: np.ndarray | None, device: torch.device) -> tuple[np.ndarray, int]:
    """(n, d) one vector per input (token mean on a tokens run) and how many empty inputs were dropped."""
    if offsets is None:
        return X, 0
    means = _input_means(X, offsets, device)
    keep = ~np.isnan(means[:, 0])
    return means[keep], int((~keep).sum())


def _compute_geometry(
    acts: Activations | Mapping[str, np.ndarray],
    layer_names: tuple[str, ...],
    metric_names: tuple[str, ...],
    opts: dict[str, Any],
    seed: int,
    max_points: int,
    params: dict[str, Any],
    progress: ProgressCallback | None,
) -> GeometryResult:
    device = pick_device(opts["device"])
    is_tokens = isinstance(acts, Activations) and acts.is_tokens
    offsets = acts.offsets if is_tokens else None
    out_names = tuple(name for m in metric_names for name in RESULT_METRICS[m])
    n_layers = len(layer_names)
    mean = {m: np.full(n_layers, np.nan) for m in out_names}
    q25 = {m: np.full(n_layers, np.nan) for m in out_names}
    q75 = {m: np.full(n_layers, np.nan) for m in out_names}
    n_skipped = {m: np.zeros(n_layers, dtype=np.int64) for m in out_names}
    layer_reasons: dict[str, list[str | None]] = {m: [None] * n_layers for m in out_names}
    id_points: list[int] = []
    total, done = n_layers * len(metric_names), 0

    for li, layer in enumerate(layer_names):
        X = acts[layer] if isinstance(acts, Activations) else as_matrix(acts[layer], f"acts[{layer!r}]")
        pooled: np.ndarray | None = None
        spectrum: np.ndarray | None = None
        dropped = 0

        def measure(metric: str) -> dict[str, Callable[[], float]]:
            """Dataset-level value(s) of `metric` at this layer, by result metric name, computed lazily."""
            nonlocal pooled, spectrum, dropped
            if pooled is None:
                pooled, dropped = _pooled_vectors(X, offsets, device)
            vectors = pooled
            if metric == "intrinsic_dimension":
                rows = vectors
                if len(vectors) > max_points:  # the same inputs at every layer: the seed fixes them
                    chosen = np.random.default_rng(seed).choice(len(vectors), max_points, replace=False)
                    rows = vectors[np.sort(chosen)]
                id_points.append(len(rows))
                return {metric: lambda: intrinsic_dimension(rows, opts["id_method"], fraction=opts["id_fraction"],
                                                            device=device)}
            if metric == "dataset_entropy":
                return {metric: lambda: matrix_entropy(vectors, alpha=opts["entropy_alpha"],
                                                       normalize=opts["entropy_normalize"], device=device)}
            if spectrum is None:  # effective rank and top-eigenvalue share use one spectrum
                spectrum = _gram_spectrum(as_matrix(vectors), unit_rows=False, device=device)
            eig = spectrum
            if metric == "effective_rank":
                return {metric: lambda: _effective_rank_from_spectrum(eig, len(vectors))}
            return {  # separately: constant rows have no covariance share but a defined mean cosine
                "anisotropy_mean_cosine": lambda: _mean_cosine(vectors, int(opts["anisotropy_n_pairs"]), seed),
                "anisotropy_top_eigenvalue_share": lambda: _top_share_from_spectrum(eig, len(vectors)),
            }

        for metric in metric_names:
            try:
                if metric in PER_INPUT_METRICS:
                    if not is_tokens:
                        raise LayerscopeError(f"needs pooling='tokens' (this run used pooling={params['pooling']!r})")
                    values, reason = _per_input_values(metric, X, offsets, opts, device)
                    n_skipped[metric][li] = int(np.isnan(values).sum())
                    layer_reasons[metric][li] = reason
                    if n_skipped[metric][li] < len(values):
                        mean[metric][li] = float(np.nanmean(values))
                        q25[metric][li], q75[metric][li] = np.nanpercentile(values, [25, 75])
                else:
                    for name, compute_value in measure(metric).items():
                        try:
                            mean[name][li] = compute_value()
                            if dropped:
                                n_skipped[name][li] = dropped
                                layer_reasons[name][li] = f"{dropped} input(s) without tokens left out"
                        except LayerscopeError as err:
                            layer_reasons[name][li] = str(err)
                            logger.info("geometry %s at layer %s: %s", name, layer, err)
            except LayerscopeError as err:
                for name in RESULT_METRICS[metric]:
                    layer_reasons[name][li] = str(err)
                logger.info("geometry %s at layer %s: %s", metric, layer, err)
            done += 1
            if progress is not None:
                progress(done, total, f"{metric} at layer {layer}")

    params = {**params, "id_points_used": id_points, "device": str(device)}
    return GeometryResult(
        layer_names=layer_names,
        metrics=out_names,
        mean=mean,
        q25=q25,
        q75=q75,
        n_skipped=n_skipped,
        reasons={m: _summarise_layer_reasons(layer_names, layer_reasons[m]) for m in out_names},
        layer_reasons={m: tuple(r) for m, r in layer_reasons.items()},
        params=params,
    )


def _to_store(result: GeometryResult) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    for m in result.metrics:
        arrays[f"{m}__mean"] = result.mean[m]
        arrays[f"{m}__q25"] = result.q25[m]
        arrays[f"{m}__q75"] = result.q75[m]
        arrays[f"{m}__n_skipped"] = result.n_skipped[m]
    meta = {
        "layer_names": list(result.layer_names),
        "metrics": list(result.metrics),
        "reasons": result.reasons,
        "layer_reasons": {m: list(r) for m, r in result.layer_reasons.items()},
        "result_params": result.params,
    }
    return arrays, meta


def _from_store(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> GeometryResult:
    metrics = tuple(meta["metrics"])
    return GeometryResult(
        layer_names=tuple(meta["layer_names"]),
        metrics=metrics,
        mean={m: np.array(arrays[f"{m}__mean"]) for m in metrics},
        q25={m: np.array(arrays[f"{m}__q25"]) for m in metrics},
        q75={m: np.array(arrays[f"{m}__q75"]) for m in metrics},
        n_skipped={m: np.array(arrays[f"{m}__n_skipped"]) for m in metrics},
        reasons=dict(meta["reasons"]),
        layer_reasons={m: tuple(r) for m, r in meta["layer_reasons"].items()},
        params=dict(meta["result_params"]),
    )
