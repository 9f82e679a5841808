"""Similarity of two representations of the same inputs, for every pair of layers.

Definitions follow /work/shared/METRICS.md, section "Comparing two representations".
Each metric takes X (n, d1) and Y (n, d2) with rows aligned by input (widths may
differ) and returns a Python float:

* ``linear_cka``: Kornblith et al. 2019, google-research representation_similarity
  Demo.ipynb ``feature_space_linear_cka``: |Xc^T Yc|_F^2 / (|Xc^T Xc|_F |Yc^T Yc|_F).
* ``debiased_cka``: the same with the unbiased HSIC (Song et al. 2012), as the Demo's
  ``cka(gram_linear(X), gram_linear(Y), debiased=True)``; can be slightly negative.
* ``rbf_cka``: Demo ``cka(gram_rbf(X, bandwidth), gram_rbf(Y, bandwidth))``: Gaussian
  kernel with sigma^2 = bandwidth^2 * median squared distance (the median taken over the
  full n x n matrix, diagonal included, as ``gram_rbf`` does).
* ``mutual_knn``: Huh et al. 2024 (platonic-rep metrics.py): unit-normalise rows,
  neighbours by inner product with self excluded, mean |N_A(i) & N_B(i)| / k.
  ``clip_quantile=0.95`` first clamps every entry to +-t, t = the mean over rows of each
  row's 0.95 quantile of |x| (platonic-rep ``remove_outliers(q, exact=False)``; they apply
  it to all of a model's layers stacked, here it is per layer). Off by default.
* ``svcca``: Raghu et al. 2017 (google/svcca): keep the top singular directions that
  explain ``variance`` of each centred side, then the mean canonical correlation.
* ``rsa``: Spearman correlation of the upper triangles of the two RDMs (1 - Pearson
  correlation between inputs).
* ``orthogonal_procrustes_distance``: Ding et al. 2021: centre, scale to unit Frobenius
  norm, 2 - 2 |Xc^T Yc|_* in [0, 2]. A distance: 0 means identical up to rotation.

Undefined values are never silent: the pair functions raise `LayerscopeError` naming
the problem (constant activations, k >= n, a trivially perfect SVCCA, ...);
`similarity_matrix` turns those into NaN plus a reason in `SimilarityResult.reasons`.

`similarity_matrix` prepares each layer once (centred features, kNN index sets, SVCCA
bases, ranked RDMs, centred RBF Grams), in float64 on CUDA when present, then fills the
La x Lb matrix from the prepared layers. Linear and debiased CKA pick the cheaper of two
exact float64 routes: feature-space products |Xa^T Xb|_F^2, or centred Grams streamed in
row blocks (never n x n per layer held in memory). Large linear-CKA matrices on the CPU
(more than `_FLOAT32_MIN_WORK` float64 multiply-adds) build the Grams' upper triangles in
float32 instead and add every product in float64: about 6x faster than a per-pair float64
loop for 7 x 31 layers on 2,000 inputs, within ~1e-9 of it (bench/similarity.py). The
single-pair functions always use float64.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
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

SIMILARITY_VERSION = 1  # bump when a formula or convention changes: invalidates cached results
DEFAULT_MAX_POINTS = 5000
_BLOCK_BYTES = 256 * 2**20  # float64 working set of one block of Gram rows (all layers together)
_FLOAT32_MIN_WORK = 1e9  # float64 multiply-adds (~0.01-0.1 s) below which linear-CKA matrices stay in float64
_GRAM_BLOCK_BYTES = 32 * 2**20  # float32 Gram rows of one side's layers per block (CPU linear-CKA route)
_PREPARED_BYTES = 2 * 2**30  # prepared layers held at once; beyond it layers are prepared again per group

ProgressCallback = Callable[[int, int, str], None]


# ----- input checks ------------------------------------------------------------------
def _as_tensor(X: Any, name: str, device: torch.device) -> torch.Tensor:
    """X (n, d) as a float64 tensor on `device` (-0.0 becomes 0.0); raises on bad shape or NaN/inf."""
    array = as_matrix(X, name)
    if array.shape[1] == 0:
        raise LayerscopeError(f"{name} has no features (shape {array.shape})")
    values = np.array(array, dtype=np.float64)
    values += 0.0  # in place: -0.0 becomes 0.0
    tensor = torch.from_numpy(values).to(device)
    if not math.isfinite(float(tensor.sum())):  # one pass; count only when something is off
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise LayerscopeError(
                f"{name} has {bad} non-finite values (NaN or inf); similarity needs finite "
                "activations (float16 overflow, or inputs without tokens in a tokens run?)"
            )
    return tensor


def _pair_tensors(X: Any, Y: Any, device: str | torch.device | None, min_rows: int, metric: str):
    dev = pick_device(device)
    Xt, Yt = _as_tensor(X, "X", dev), _as_tensor(Y, "Y", dev)
    if Xt.shape[0] != Yt.shape[0]:
        raise LayerscopeError(
            f"X has {Xt.shape[0]} rows but Y has {Yt.shape[0]}; rows must be the same inputs in the same order"
        )
    _check_rows(Xt.shape[0], min_rows, metric)
    return Xt, Yt


def _check_rows(n: int, min_rows: int, metric: str) -> None:
    if n < min_rows:
        raise LayerscopeError(f"{metric} needs at least {min_rows} inputs; got n={n}")


def _centre(X: torch.Tensor) -> torch.Tensor:
    """X minus its column means, in place (X is always `_as_tensor`'s own copy); constant columns
    become exactly 0 (no round-off residue)."""
    constant = X.amin(dim=0) == X.amax(dim=0)
    return X.sub_(torch.where(constant, X[0], X.mean(dim=0)))


def _constant_error(name: str, n: int, why: str) -> LayerscopeError:
    return LayerscopeError(f"{name} is constant: all {n} inputs have the same activations, so {why}")


# ----- prepared layers -----------------------------------------------------------------
@dataclass(frozen=True)
class _Centred:
    """Centred features reduced to r = min(n, d) columns with the same Gram: P P^T = Xc Xc^T."""

    P: torch.Tensor  # (n, r)
    ssr: torch.Tensor  # (n,) squared row norms = diag of the centred Gram


def _centred(X: torch.Tensor, name: str, why: str = "CKA is 0/0") -> _Centred:
    n, d = X.shape
    Xc = _centre(X)
    if d > n:  # Xc^T = Q R: Xc = R^T Q^T, so R^T keeps every inner product between rows
        Xc = torch.linalg.qr(Xc.T, mode="r").R.T  # (n, n)
    ssr = torch.linalg.vector_norm(Xc, dim=1).square()
    if not bool((ssr > 0).any()):
        raise _constant_error(name, n, why)
    return _Centred(Xc, ssr)


def _hsic(a: _Centred, b: _Centred, debiased: bool) -> float:
    """|Xa^T Xb|_F^2, or its debiased form (Demo `_debiased_dot_product_similarity_helper`)."""
    cross = float(torch.linalg.matrix_norm(a.P.T @ b.P) ** 2)
    if not debiased:
        return cross
    n = a.P.shape[0]
    return (
        cross
        - n / (n - 2.0) * float(a.ssr @ b.ssr)
        + float(a.ssr.sum()) * float(b.ssr.sum()) / ((n - 1.0) * (n - 2.0))
    )


def _u_centring_means(c: _Centred) -> torch.Tensor:
    """(n,) row terms of the Demo's `center_gram(unbiased=True)` for the Gram P P^T."""
    n = c.P.shape[0]
    colsum = c.P @ c.P.sum(dim=0) - c.ssr  # column sums of the Gram with its diagonal zeroed
    return colsum / (n - 2.0) - colsum.sum() / (2.0 * (n - 1.0) * (n - 2.0))


def _gram_rows(c: _Centred, means: torch.Tensor | None, i0: int, i1: int) -> torch.Tensor:
    """Rows i0:i1 (b, n) of the centred Gram, or of the U-centred Gram when `means` is given."""
    K = c.P[i0:i1] @ c.P.T
    if means is not None:
        K = K - means[i0:i1, None] - means[None, :]
        K[torch.arange(i1 - i0, device=K.device), torch.arange(i0, i1, device=K.device)] = 0.0
    return K


def _cka_matrix(A: Sequence[_Centred], B: Sequence[_Centred], debiased: bool, symmetric: bool,
                allow_float32: bool = False) -> np.ndarray:
    """(len(A), len(B)) linear or debiased CKA by the cheapest route.

    The float64 routes are exact. With `allow_float32`, linear CKA on the CPU whose float64
    work exceeds `_FLOAT32_MIN_WORK` takes float32 Grams with float64 sums when that is
    cheaper (within about 1e-9 of float64; see `_linear_cka_by_float32_grams`).
    symmetric: A and B are the same layers; only the upper triangle is computed.
    """
    n = A[0].P.shape[0]
    ra = np.array([a.P.shape[1] for a in A], dtype=float)
    rb = np.array([b.P.shape[1] for b in B], dtype=float)
    share = 0.5 if symmetric else 1.0
    # multiply-adds in float64
    feature_cost = n * (share * ra.sum() * rb.sum() + (ra**2).sum() + (0 if symmetric else (rb**2).sum()))
    gram_cost = n * n * (ra.sum() + (0 if symmetric else rb.sum()) + len(A) * len(B))
    # float32 BLAS runs about 3x faster than float64 on a CPU, and only upper triangles are built
    float32_cost = gram_cost / 6.0
    if (allow_float32 and not debiased and A[0].P.device.type == "cpu"
            and min(feature_cost, gram_cost) > _FLOAT32_MIN_WORK and float32_cost < feature_cost):
        out = _linear_cka_by_float32_grams(A, B, symmetric)
    elif gram_cost < feature_cost:
        out = _cka_by_gram_rows(A, B, debiased, symmetric)
    else:
        out = _cka_by_features(A, B, debiased, symmetric)
    if debiased:
        return np.clip(out, -1.0, 1.0)
    return np.clip(out, 0.0, 1.0)


def _cka_by_features(A: Sequence[_Centred], B: Sequence[_Centred], debiased: bool, symmetric: bool) -> np.ndarray:
    self_a = np.array([_hsic(a, a, debiased) for a in A])
    self_b = self_a if symmetric else np.array([_hsic(b, b, debiased) for b in B])
    out = np.empty((len(A), len(B)))
    for i, a in enumerate(A):
        for j, b in enumerate(B):
            if symmetric and j < i:
                out[i, j] = out[j, i]
            elif symmetric and j == i:
                out[i, j] = 1.0 if self_a[i] > 0 else math.nan
            else:
                out[i, j] = _hsic(a, b, debiased) / math.sqrt(self_a[i] * self_b[j])
    return out


def _cka_by_gram_rows(A: Sequence[_Centred], B: Sequence[_Centred], debiased: bool, symmetric: bool) -> np.ndarray:
    """CKA from centred Grams built in blocks of rows: <Ka, Kb> / (|Ka| |Kb|), exact."""
    n = A[0].P.shape[0]
    device = A[0].P.device
    means_a = [_u_centring_means(a) if debiased else None for a in A]
    means_b = means_a if symmetric else [_u_centring_means(b) if debiased else None for b in B]
    held = len(A) + (0 if symmetric else len(B))
    step = max(1, _BLOCK_BYTES // (8 * n * held))
    cross = torch.zeros((len(A), len(B)), dtype=torch.float64, device=device)
    sq_a = torch.zeros(len(A), dtype=torch.float64, device=device)
    sq_b = torch.zeros(len(B), dtype=torch.float64, device=device)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        GA = torch.stack([_gram_rows(a, m, i0, i1) for a, m in zip(A, means_a)]).reshape(len(A), -1)
        GB = GA if symmetric else torch.stack([_gram_rows(b, m, i0, i1) for b, m in zip(B, means_b)])
        GB = GB.reshape(len(B), -1)  # (Lb, rows x n)
        cross += GA @ GB.T
        sq_a += (GA * GA).sum(dim=1)
        if not symmetric:
            sq_b += (GB * GB).sum(dim=1)
    if symmetric:
        sq_b = sq_a
    out = (cross / torch.sqrt(sq_a[:, None] * sq_b[None, :])).cpu().numpy()  # layers are never constant here
    if symmetric:
        np.fill_diagonal(out, np.where(sq_a.cpu().numpy() > 0, 1.0, np.nan))
    return out


def _float32_features(c: _Centred) -> torch.Tensor:
    return c.P.to(torch.float32).contiguous()


def _gram_block(P: Sequence[torch.Tensor], r0: int, r1: int, buffer: np.ndarray) -> np.ndarray:
    """(len(P), r1 - r0, n - r0): rows r0:r1 of each float32 Gram from column r0 on (upper
    triangle), written into the front of the flat `buffer`."""
    n = P[0].shape[0]
    out = buffer[: len(P) * (r1 - r0) * (n - r0)].reshape(len(P), r1 - r0, n - r0)
    for k, p in enumerate(P):
        torch.mm(p[r0:r1], p[r0:].T, out=torch.from_numpy(out[k]))
    return out


def _row_dots(ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
    """(La, Lb) sums over the block of ga[i] * gb[j]: one float32 dot per row, rows added in float64."""
    return np.matmul(ga.transpose(1, 0, 2), gb.transpose(1, 2, 0)).sum(axis=0, dtype=np.float64)


def _upper_dots(ga: np.ndarray, gb: np.ndarray, width: int) -> np.ndarray:
    """Frobenius products over the whole symmetric Grams, from a block of their upper triangles:
    the square block on the diagonal (first `width` columns) counts once, the rest twice."""
    return 2.0 * _row_dots(ga, gb) - _row_dots(ga[:, :, :width], gb[:, :, :width])


def _upper_squares(g: np.ndarray, width: int) -> np.ndarray:
    """(L,) `_upper_dots` of each Gram in the block with itself (one float32 dot per row)."""
    def squares(h: np.ndarray) -> np.ndarray:
        return np.matmul(h[:, :, None, :], h[:, :, :, None])[:, :, 0, 0].sum(axis=1, dtype=np.float64)
    return 2.0 * squares(g) - squares(g[:, :, :width])


def _linear_cka_by_float32_grams(A: Sequence[_Centred], B: Sequence[_Centred], symmetric: bool) -> np.ndarray:
    """Linear CKA <Ka, Kb> / (|Ka| |Kb|) from float32 centred Grams, on the CPU.

    The data are centred in float64 first; each Gram entry is then a float32 dot of at most
    d terms, each row's Frobenius-product term a float32 dot of at most n terms, and the
    rows are added in float64, so values agree with the float64 formula to about 1e-9 on
    real activations (bench/similarity.py prints the difference). Grams are built in blocks
    of rows of their upper triangles (`_GRAM_BLOCK_BYTES` per side), never held whole.
    symmetric: A and B are the same layers.
    """
    n = A[0].P.shape[0]
    PA = [_float32_features(a) for a in A]
    PB = PA if symmetric else [_float32_features(b) for b in B]
    rows = int(np.clip(_GRAM_BLOCK_BYTES // (4 * n * max(len(PA), len(PB))), 8, n))
    buffer_a = np.empty(len(PA) * rows * n, dtype=np.float32)
    buffer_b = buffer_a if symmetric else np.empty(len(PB) * rows * n, dtype=np.float32)
    cross = np.zeros((len(A), len(B)))
    sq_a, sq_b = np.zeros(len(A)), np.zeros(len(B))
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        ga = _gram_block(PA, r0, r1, buffer_a)
        gb = ga if symmetric else _gram_block(PB, r0, r1, buffer_b)
        cross += _upper_dots(ga, gb, r1 - r0)
        if not symmetric:
            sq_a += _upper_squares(ga, r1 - r0)
            sq_b += _upper_squares(gb, r1 - r0)
    if symmetric:
        sq_a = sq_b = np.diag(cross).copy()
    out = cross / np.sqrt(np.outer(sq_a, sq_b))  # layers are never constant here
    if symmetric:
        out = np.triu(out) + np.triu(out, 1).T
        np.fill_diagonal(out, 1.0)
    return out


def _check_debiased_self(c: _Centred, name: str) -> _Centred:
    if _hsic(c, c, True) <= 0:
        raise LayerscopeError(
            f"{name}: the debiased HSIC of {name} with itself is not positive (n={c.P.shape[0]} inputs is too few, "
            "or the activations are nearly constant); debiased CKA is undefined"
        )
    return c


def _procrustes_features(X: torch.Tensor, name: str) -> _Centred:
    c = _centred(X, name, "the Procrustes distance has no scale to normalise")
    scale = torch.sqrt(c.ssr.sum())
    return _Centred(c.P / scale, c.ssr / scale**2)


def _procrustes_pair(a: _Centred, b: _Centred) -> float:
    nuclear = float(torch.linalg.svdvals(a.P.T @ b.P).sum())
    return min(2.0, max(0.0, 2.0 - 2.0 * nuclear))


def _clip_rows(X: torch.Tensor, q: float) -> torch.Tensor:
    """Clamp to +-t, t = mean over rows of each row's q-quantile of |x| (platonic-rep `remove_outliers`)."""
    if q >= 1.0:
        return X
    step = max(1, (2**24 - 1) // X.shape[1])  # torch.quantile takes at most 2^24 elements at once
    quantiles = torch.cat(
        [torch.quantile(X[i : i + step].abs(), q, dim=1) for i in range(0, X.shape[0], step)]
    )
    t = quantiles.mean()
    return X.clamp(-t, t)


def _knn_indices(X: torch.Tensor, name: str, k: int, clip_quantile: float | None) -> torch.Tensor:
    """(n, k) indices of each row's k nearest rows by inner product of unit rows, self excluded."""
    n = X.shape[0]
    if clip_quantile is not None:
        X = _clip_rows(X, clip_quantile)
    norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    zero = int((norms[:, 0] == 0).sum())
    if zero == n:
        raise _constant_error(name, n, "every row is zero and has no direction for nearest neighbours")
    if zero:
        raise LayerscopeError(
            f"{name} has {zero} all-zero rows (of {n}); they have no direction, so their nearest neighbours "
            "would be arbitrary"
        )
    Z = X / norms
    if bool((Z == Z[0]).all()):
        raise _constant_error(name, n, "every input points the same way and nearest neighbours are all ties")
    step = max(1, _BLOCK_BYTES // (8 * n))
    out = torch.empty((n, k), dtype=torch.long, device=X.device)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        sims = Z[i0:i1] @ Z.T  # (b, n)
        sims[torch.arange(i1 - i0, device=X.device), torch.arange(i0, i1, device=X.device)] = -math.inf
        out[i0:i1] = torch.topk(sims, k, dim=1).indices
    return out


def _knn_pair(a: torch.Tensor, b: torch.Tensor) -> float:
    n, k = a.shape
    shared = (a[:, :, None] == b[:, None, :]).sum()
    return float(shared) / (n * k)


@dataclass(frozen=True)
class _Basis:
    U: torch.Tensor  # (n, k) orthonormal basis of the kept singular directions (sample space)
    n_rank: int  # numerical rank of the centred data


def _svcca_basis(X: torch.Tensor, name: str, variance: float) -> _Basis:
    n, d = X.shape
    Xc = _centre(X)
    U, s, _ = torch.linalg.svd(Xc, full_matrices=False)
    if not bool((s > 0).any()):
        raise _constant_error(name, n, "it has no singular directions for SVCCA")
    s = torch.where(s > max(n, d) * torch.finfo(torch.float64).eps * s[0], s, 0.0)  # round-off -> 0
    energy = s**2
    share = torch.cumsum(energy, 0) / energy.sum()
    kept = int(torch.searchsorted(share, torch.tensor(variance - 1e-12, dtype=share.dtype, device=share.device))) + 1
    rank = int((s > 0).sum())
    return _Basis(U[:, : min(kept, rank)], rank)


def _svcca_pair(a: _Basis, b: _Basis) -> float:
    n = a.U.shape[0]
    ka, kb = a.U.shape[1], b.U.shape[1]
    if ka + kb > n - 1:  # both fit in the (n - 1)-dim centred space only if they overlap
        raise LayerscopeError(
            f"SVCCA keeps {ka} + {kb} directions but {n} centred inputs span only {n - 1} dimensions, so at least "
            f"{ka + kb - n + 1} canonical correlations are 1 by construction; use more inputs or a lower variance"
        )
    rho = torch.linalg.svdvals(a.U.T @ b.U).clamp(0.0, 1.0)  # cosines of principal angles = canonical correlations
    return float(rho.mean())


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks of v with ties given their average rank (scipy.stats.rankdata 'average')."""
    order = torch.argsort(v)
    _, inverse, counts = torch.unique_consecutive(v[order], return_inverse=True, return_counts=True)
    counts = counts.to(torch.float64)
    ranks = torch.empty_like(v)
    ranks[order] = (torch.cumsum(counts, 0) - (counts - 1.0) / 2.0)[inverse]
    return ranks


def _rsa_vector(X: torch.Tensor, name: str) -> torch.Tensor:
    """(n (n - 1) / 2,) centred, unit-norm ranks of the RDM's upper triangle."""
    n, d = X.shape
    if bool((X == X[0]).all()):
        raise _constant_error(name, n, "its RDM is constant and has no ranking to correlate")
    if d < 2:
        raise LayerscopeError(f"{name} has {d} feature; the correlation between two inputs needs at least 2")
    constant = X.amin(dim=1) == X.amax(dim=1)
    if bool(constant.any()):
        raise LayerscopeError(
            f"{name} has {int(constant.sum())} inputs (of {n}) whose activations are equal across all features; "
            "their correlation distance (RDM entry) is undefined"
        )
    Xr = X - X.mean(dim=1, keepdim=True)
    Z = Xr / torch.linalg.vector_norm(Xr, dim=1, keepdim=True)
    rdm = 1.0 - Z @ Z.T  # (n, n)
    upper = rdm[torch.ones(n, n, dtype=torch.bool, device=X.device).triu(1)]
    del rdm
    ranks = _average_ranks(upper)
    ranks -= ranks.mean()
    norm = torch.linalg.vector_norm(ranks)
    if norm == 0:
        raise _constant_error(name, n, "its RDM is constant and has no ranking to correlate")
    return ranks / norm


@dataclass(frozen=True)
class _RbfGram:
    """Centred RBF Gram scaled to unit Frobenius norm, stored as its diagonal and sqrt(2) * upper triangle."""

    diag: torch.Tensor  # (n,)
    upper: torch.Tensor  # (n (n - 1) / 2,)


def _rbf_gram(X: torch.Tensor, name: str, bandwidth: float) -> _RbfGram:
    n = X.shape[0]
    Xc = _centre(X)
    if not bool(Xc.any()):
        raise _constant_error(name, n, "every kernel value is equal and CKA is 0/0")
    sq = (Xc * Xc).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (Xc @ Xc.T)).clamp_min(0.0)  # (n, n)
    d2.fill_diagonal_(0.0)
    mask = torch.ones(n, n, dtype=torch.bool, device=X.device).triu(1)
    # median of the full n x n matrix (n zeros on the diagonal, each off-diagonal value twice), as np.median
    upper = d2[mask]

    def full_sorted(p: int) -> torch.Tensor:
        if p < n:
            return torch.zeros((), dtype=torch.float64, device=X.device)
        return torch.kthvalue(upper, (p - n) // 2 + 1).values

    total = n * n
    median = full_sorted(total // 2) if total % 2 else (full_sorted(total // 2 - 1) + full_sorted(total // 2)) / 2
    if median <= 0:
        raise LayerscopeError(
            f"{name}: the median distance between inputs is 0 (at least half of the {n} x {n} pairs coincide, "
            "e.g. constant activations), so the RBF bandwidth is 0"
        )
    K = torch.exp(-d2 / (2.0 * bandwidth**2 * median))
    del d2
    means = K.mean(dim=0)
    K = K - means[:, None] - means[None, :] + means.mean()
    norm = torch.linalg.matrix_norm(K)
    if norm <= 1e-12 * n:  # constant data: every kernel value equal, centring leaves round-off
        raise _constant_error(name, n, "its centred RBF Gram is zero and CKA is 0/0")
    K = K / norm
    return _RbfGram(torch.diagonal(K).clone(), math.sqrt(2.0) * K[mask])


def _rbf_pair(a: _RbfGram, b: _RbfGram) -> float:
    return min(1.0, max(0.0, float(a.diag @ b.diag + a.upper @ b.upper)))


def _dot_pair(a: torch.Tensor, b: torch.Tensor) -> float:
    return min(1.0, max(-1.0, float(a @ b)))


# ----- the metrics -----------------------------------------------------------------------
def linear_cka(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """Linear CKA of X (n, d1) and Y (n, d2), rows aligned by input; in [0, 1]."""
    Xt, Yt = _pair_tensors(X, Y, device, 2, "linear_cka")
    return float(_cka_matrix([_centred(Xt, "X")], [_centred(Yt, "Y")], False, False)[0, 0])


def debiased_cka(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """Linear CKA with the unbiased HSIC estimator; X (n, d1), Y (n, d2), n >= 4. Near 0 for unrelated data."""
    Xt, Yt = _pair_tensors(X, Y, device, 4, "debiased_cka")
    a = _check_debiased_self(_centred(Xt, "X"), "X")
    b = _check_debiased_self(_centred(Yt, "Y"), "Y")
    return float(_cka_matrix([a], [b], True, False)[0, 0])


def rbf_cka(X: Any, Y: Any, *, bandwidth: float = 1.0, device: str | torch.device | None = None) -> float:
    """CKA with Gaussian kernels; bandwidth = sigma as a fraction of the median distance. X (n, d1), Y (n, d2)."""
    params = _check_params("rbf_cka", {"bandwidth": bandwidth})
    Xt, Yt = _pair_tensors(X, Y, device, 2, "rbf_cka")
    return _rbf_pair(_rbf_gram(Xt, "X", params["bandwidth"]), _rbf_gram(Yt, "Y", params["bandwidth"]))


def mutual_knn(
    X: Any, Y: Any, *, k: int = 10, clip_quantile: float | None = None, device: str | torch.device | None = None
) -> float:
    """Mean share of each input's k nearest neighbours (unit rows, inner product) that X and Y agree on.

    X (n, d1), Y (n, d2); needs n > k. Identical or rotated data give 1, unrelated data about k / (n - 1).
    """
    params = _check_params("mutual_knn", {"k": k, "clip_quantile": clip_quantile})
    Xt, Yt = _pair_tensors(X, Y, device, 2, "mutual_knn")
    _check_k(params["k"], Xt.shape[0])
    k, clip = params["k"], params["clip_quantile"]
    return _knn_pair(_knn_indices(Xt, "X", k, clip), _knn_indices(Yt, "Y", k, clip))


def svcca(X: Any, Y: Any, *, variance: float = 0.99, device: str | torch.device | None = None) -> float:
    """Mean canonical correlation between the top singular directions explaining `variance` of X and of Y."""
    params = _check_params("svcca", {"variance": variance})
    Xt, Yt = _pair_tensors(X, Y, device, 3, "svcca")
    return _svcca_pair(_svcca_basis(Xt, "X", params["variance"]), _svcca_basis(Yt, "Y", params["variance"]))


def rsa(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """Spearman correlation of the upper triangles of the RDMs (1 - Pearson r between inputs) of X and Y."""
    Xt, Yt = _pair_tensors(X, Y, device, 3, "rsa")
    return _dot_pair(_rsa_vector(Xt, "X"), _rsa_vector(Yt, "Y"))


def orthogonal_procrustes_distance(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """min over rotations R of |X' - Y' R|_F^2 for centred, unit-Frobenius X', Y' (zero-padded); in [0, 2]."""
    Xt, Yt = _pair_tensors(X, Y, device, 2, "orthogonal_procrustes_distance")
    return _procrustes_pair(_procrustes_features(Xt, "X"), _procrustes_features(Yt, "Y"))


# name -> (function, what it measures); feeds a dropdown
SIMILARITY_METRICS: dict[str, tuple[Callable[..., float], str]] = {
    "linear_cka": (linear_cka, "linear centred kernel alignment (Kornblith et al. 2019), 0 to 1"),
    "debiased_cka": (debiased_cka, "linear CKA with the unbiased HSIC estimator; near 0 for unrelated data"),
    "rbf_cka": (rbf_cka, "CKA with Gaussian kernels, bandwidth a fraction of the median distance"),
    "mutual_knn": (mutual_knn, "share of k nearest neighbours both representations agree on (Huh et al. 2024)"),
    "svcca": (svcca, "mean canonical correlation of the top singular directions (Raghu et al. 2017)"),
    "rsa": (rsa, "Spearman correlation of representational dissimilarity matrices"),
    "orthogonal_procrustes_distance": (
        orthogonal_procrustes_distance,
        "distance after the best rotation, 0 (same up to rotation) to 2 (Ding et al. 2021)",
    ),
}
# metric -> its parameters and their defaults (filled before validation)
METRIC_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear_cka": {},
    "debiased_cka": {},
    "rbf_cka": {"bandwidth": 1.0},
    "mutual_knn": {"k": 10, "clip_quantile": None},
    "svcca": {"variance": 0.99},
    "rsa": {},
    "orthogonal_procrustes_distance": {},
}
DISTANCE_METRICS = frozenset({"orthogonal_procrustes_distance"})  # lower is more similar
_MIN_ROWS = {"debiased_cka": 4, "svcca": 3, "rsa": 3}
METRIC_NAMES = {  # display names
    "linear_cka": "linear CKA",
    "debiased_cka": "debiased CKA",
    "rbf_cka": "RBF CKA",
    "mutual_knn": "mutual k-NN",
    "svcca": "SVCCA",
    "rsa": "RSA (Spearman)",
    "orthogonal_procrustes_distance": "Procrustes distance",
}


def _check_metric(metric: str) -> str:
    if metric not in SIMILARITY_METRICS:
        raise LayerscopeError(
            f"metric={metric!r} is not a similarity metric; choose one of {', '.join(SIMILARITY_METRICS)}"
        )
    return metric


def _check_params(metric: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, then every value checked; unknown names rejected."""
    defaults = METRIC_DEFAULTS[_check_metric(metric)]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise LayerscopeError(f"{metric} has no parameter {', '.join(map(repr, unknown))}; its parameters: {allowed}")
    out = {**defaults, **params}
    if "bandwidth" in out:
        out["bandwidth"] = _positive_float(out["bandwidth"], "bandwidth", "a fraction of the median distance, e.g. 1.0")
    if "k" in out:
        k = out["k"]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise LayerscopeError(f"k={k!r} must be a positive integer (neighbours per input)")
        out["k"] = int(k)
    if out.get("clip_quantile") is not None:
        q = _positive_float(out["clip_quantile"], "clip_quantile", "None (no clipping) or a quantile such as 0.95")
        if q > 1:
            raise LayerscopeError(f"clip_quantile={q!r} must be None or in (0, 1]; platonic-rep uses 0.95")
        out["clip_quantile"] = q
    if "variance" in out:
        v = _positive_float(out["variance"], "variance", "the share of variance kept, e.g. 0.99")
        if v > 1:
            raise LayerscopeError(f"variance={v!r} must be in (0, 1]; google/svcca keeps 0.99")
        out["variance"] = v
    return out


def _positive_float(value: Any, name: str, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise LayerscopeError(f"{name}={value!r} must be a number: {allowed}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise LayerscopeError(f"{name}={value!r} must be positive and finite: {allowed}")
    return value


def _check_k(k: int, n: int) -> None:
    if k >= n:
        raise LayerscopeError(
            f"k={k} must be smaller than the number of inputs n={n} (each input has n - 1 = {n - 1} neighbours); "
            "lower k or compare more inputs"
        )


# ----- layer-by-layer matrix ------------------------------------------------------------
@dataclass(frozen=True)
class SimilarityResult:
    """Similarity of every layer of run A with every layer of run B on the same inputs."""

    metric: str  # key of SIMILARITY_METRICS
    params: dict[str, Any]  # metric parameters with defaults filled (k, clip_quantile, bandwidth, variance)
    layers_a: tuple[str, ...]  # run A's layers (matrix rows), in model order
    layers_b: tuple[str, ...]  # run B's layers (matrix columns), in model order
    matrix: np.ndarray  # (La, Lb) float64; NaN where undefined (see reasons)
    run_a: str | None  # store key of run A (None for arrays)
    run_b: str | None  # store key of run B
    n: int  # inputs compared (after subsampling to max_points)
    n_inputs: int  # inputs in the runs
    seed: int  # seed of the row subsample
    max_points: int | None  # row cap; None = all inputs
    reasons: tuple[tuple[str | None, str | None, str], ...]  # (layer_a or None = all, layer_b or None = all, why NaN)
    info: dict[str, Any]  # model names, device, version

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in DISTANCE_METRICS

    @property
    def label(self) -> str:
        """Metric name with its variant, e.g. 'mutual k-NN (k=10, no clipping)'."""
        return metric_label(self.metric, self.params)

    def reason_at(self, i: int, j: int) -> str | None:
        """Why cell (i, j) is NaN, or None."""
        la, lb = self.layers_a[i], self.layers_b[j]
        found = [r for a, b, r in self.reasons if a in (None, la) and b in (None, lb)]
        return "; ".join(found) or None

    def best_match(self) -> tuple[str | None, ...]:
        """Run B's best-matching layer for each of run A's layers (None where the row is all NaN)."""
        best = best_match_per_layer(self.matrix, higher_is_better=self.higher_is_better)
        return tuple(self.layers_b[j] if j >= 0 else None for j in best)

    def best_pair(self) -> tuple[str, str, float] | None:
        """(layer_a, layer_b, value) of the most similar pair, None if every cell is NaN."""
        found = best_pair(self.matrix, higher_is_better=self.higher_is_better)
        return None if found is None else (self.layers_a[found[0]], self.layers_b[found[1]], found[2])

    def diagonal_on_relative_depth(self) -> float:
        return diagonal_on_relative_depth(self.matrix)

    def to_frame(self) -> pd.DataFrame:
        """pandas DataFrame in long form: layer_a, layer_b, value (one row per cell)."""
        import pandas as pd

        rows = [
            {"layer_a": la, "layer_b": lb, "value": float(self.matrix[i, j])}
            for i, la in enumerate(self.layers_a)
            for j, lb in enumerate(self.layers_b)
        ]
        return pd.DataFrame(rows, columns=["layer_a", "layer_b", "value"])


def metric_label(metric: str, params: Mapping[str, Any]) -> str:
    """Display name of a metric with the options that change its value."""
    name = METRIC_NAMES[_check_metric(metric)]
    if metric == "rbf_cka":
        return f"{name} (bandwidth {params['bandwidth']:g} x median distance)"
    if metric == "mutual_knn":
        clip = params.get("clip_quantile")
        return f"{name} (k={params['k']}, " + ("no clipping)" if clip is None else f"clipped at q={clip:g})")
    if metric == "svcca":
        return f"{name} ({100 * params['variance']:g}% variance)"
    return name


def check_aligned_runs(acts_a: Activations, acts_b: Activations) -> None:
    """Raise LayerscopeError unless both runs saw the same inputs in the same order."""
    fa = acts_a.meta.get("dataset", {}).get("fingerprint")
    fb = acts_b.meta.get("dataset", {}).get("fingerprint")
    for acts, fp in ((acts_a, fa), (acts_b, fb)):
        if not fp:
            raise LayerscopeError(
                f"run {acts.key} has no dataset fingerprint, so Layerscope cannot check that both runs saw the "
                "same inputs in the same order; extract it again"
            )
    if fa != fb or acts_a.n_inputs != acts_b.n_inputs:
        raise LayerscopeError(
            f"runs {acts_a.key} ({acts_a.model_name} on {acts_a.dataset_name!r}: {acts_a.n_inputs} inputs, "
            f"dataset fingerprint {fa}) and {acts_b.key} ({acts_b.model_name} on {acts_b.dataset_name!r}: "
            f"{acts_b.n_inputs} inputs, fingerprint {fb}) did not see the same inputs in the same order; "
            "similarity needs rows aligned by input: extract both models from the same dataset (same rows, "
            "limit and order)"
        )


def _layers_of(acts: Activations | Mapping[str, Any], chosen: Sequence[str] | None, side: str) -> tuple[str, ...]:
    available = tuple(acts.layer_names if isinstance(acts, Activations) else acts.keys())
    if not available:
        raise LayerscopeError(f"run {side} has no layers")
    if chosen is None:
        return available
    chosen = (chosen,) if isinstance(chosen, str) else tuple(chosen)
    missing = [layer for layer in chosen if layer not in available]
    if missing or not chosen:
        raise LayerscopeError(
            f"layers_{side.lower()}={list(chosen)!r} must name layers of run {side}; it has {', '.join(available)}"
        )
    return chosen


def _n_rows(acts: Activations | Mapping[str, Any], layer: str) -> int:
    return acts.n_inputs if isinstance(acts, Activations) else int(np.shape(acts[layer])[0])


def _prepare(metric: str, params: Mapping[str, Any], X: torch.Tensor, name: str) -> Any:
    if metric in ("linear_cka", "debiased_cka"):
        c = _centred(X, name)
        return _check_debiased_self(c, name) if metric == "debiased_cka" else c
    if metric == "rbf_cka":
        return _rbf_gram(X, name, params["bandwidth"])
    if metric == "mutual_knn":
        return _knn_indices(X, name, params["k"], params["clip_quantile"])
    if metric == "svcca":
        return _svcca_basis(X, name, params["variance"])
    if metric == "rsa":
        return _rsa_vector(X, name)
    return _procrustes_features(X, name)


_PAIRS: dict[str, Callable[[Any, Any], float]] = {
    "rbf_cka": _rbf_pair,
    "mutual_knn": _knn_pair,
    "svcca": _svcca_pair,
    "rsa": _dot_pair,
    "orthogonal_procrustes_distance": _procrustes_pair,
}


def _prepared_bytes(metric: str, params: Mapping[str, Any], n: int, d: int) -> int:
    if metric in ("rbf_cka", "rsa"):
        return 8 * (n * (n - 1) // 2 + n)
    if metric == "mutual_knn":
        return 8 * n * params["k"]
    return 8 * n * (min(n, d) + 1)


def _groups(indices: Sequence[int], sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive groups of `indices` whose summed sizes stay within `budget` (at least one each)."""
    groups: list[list[int]] = [[]]
    used = 0
    for i in indices:
        if groups[-1] and used + sizes[i] > budget:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += sizes[i]
    return groups


def similarity_matrix(
    acts_a: Activations | Mapping[str, Any],
    acts_b: Activations | Mapping[str, Any],
    metric: str = "linear_cka",
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    store: Store | None = None,
    progress: ProgressCallback | None = None,
    seed: int = 0,
    max_points: int | None = DEFAULT_MAX_POINTS,
    device: str | torch.device | None = None,
    **params: Any,
) -> SimilarityResult:
    """`metric` between every layer of run A and every layer of run B, as an (La, Lb) matrix.

    acts_a, acts_b: `Activations` runs over the same inputs in the same order (checked by
    dataset fingerprint and input count), or {layer: (n, d) array} mappings with equal n.
    Tokens runs are compared by the mean of each input's tokens, so models with different
    tokenizers compare fine. Rows are subsampled to `max_points` (the same inputs for every
    layer, drawn with `seed`; None = all). Metric parameters (k, clip_quantile, bandwidth,
    variance) go in **params. With `store` (Activations runs only) results are cached under
    kind "similarity". progress(done, total, message) counts matrix cells.
    """
    metric = _check_metric(metric)
    metric_params = _check_params(metric, params)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise LayerscopeError(f"seed={seed!r} must be an integer")
    if max_points is not None and (
        isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 2
    ):
        raise LayerscopeError(f"max_points={max_points!r} must be None (all inputs) or an integer of at least 2")
    is_run = [isinstance(acts, Activations) for acts in (acts_a, acts_b)]
    for acts, side in ((acts_a, "A"), (acts_b, "B")):
        if not isinstance(acts, (Activations, Mapping)):
            raise LayerscopeError(
                f"run {side} must be an Activations run or a mapping layer -> array; got {type(acts).__name__}"
            )
    if all(is_run):
        check_aligned_runs(acts_a, acts_b)
    elif any(is_run):
        raise LayerscopeError("compare two Activations runs or two mappings of arrays, not one of each")
    names_a = _layers_of(acts_a, layers_a, "A")
    names_b = _layers_of(acts_b, layers_b, "B")
    n_a, n_b = _n_rows(acts_a, names_a[0]), _n_rows(acts_b, names_b[0])
    if n_a != n_b:
        raise LayerscopeError(
            f"run A has {n_a} inputs but run B has {n_b}; rows must be the same inputs in the same order"
        )
    key_a = acts_a.key if is_run[0] else None
    key_b = acts_b.key if is_run[1] else None
    cache_params = {
        "run_a": key_a,
        "run_b": key_b,
        "metric": metric,
        **metric_params,
        "layers_a": list(names_a),
        "layers_b": list(names_b),
        "seed": int(seed),
        "max_points": None if max_points is None else int(max_points),
        "version": SIMILARITY_VERSION,
    }

    def compute() -> SimilarityResult:
        return _compute(acts_a, acts_b, metric, metric_params, names_a, names_b, n_a, int(seed), max_points,
                        pick_device(device), progress)

    if store is None:
        return compute()
    if not all(is_run):
        raise LayerscopeError("caching with store= needs Activations runs (their keys name the entry); "
                              "pass store=None for mappings of arrays")
    arrays, meta = store.cached_result("similarity", cache_params, lambda: _to_store(compute()))
    if progress is not None:
        total = len(names_a) * len(names_b)
        progress(total, total, "similarity loaded")
    return _from_store(arrays, meta)


def _compute(
    acts_a: Activations | Mapping[str, Any],
    acts_b: Activations | Mapping[str, Any],
    metric: str,
    params: dict[str, Any],
    names_a: tuple[str, ...],
    names_b: tuple[str, ...],
    n_inputs: int,
    seed: int,
    max_points: int | None,
    device: torch.device,
    progress: ProgressCallback | None,
) -> SimilarityResult:
    rows: np.ndarray | None = None
    if max_points is not None and n_inputs > max_points:  # the same inputs at every layer: the seed fixes them
        rows = np.sort(np.random.default_rng(seed).choice(n_inputs, max_points, replace=False))
    n = n_inputs if rows is None else len(rows)
    same_run = acts_a is acts_b or (isinstance(acts_a, Activations) and isinstance(acts_b, Activations)
                                    and acts_a.key == acts_b.key)
    symmetric = same_run and names_a == names_b  # every metric here is symmetric in X and Y

    def load(acts, layer: str) -> np.ndarray:
        values = acts.pooled(layer) if isinstance(acts, Activations) else acts[layer]
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        return np.asarray(values) if rows is None else np.asarray(values)[rows]

    def width(acts, layer: str) -> int:
        return acts.dim(layer) if isinstance(acts, Activations) else int(np.shape(acts[layer])[1])

    matrix = np.full((len(names_a), len(names_b)), np.nan)
    reasons: list[tuple[str | None, str | None, str]] = []
    min_rows = max(_MIN_ROWS.get(metric, 2), params["k"] + 1 if metric == "mutual_knn" else 2)
    try:
        if metric == "mutual_knn":
            _check_k(params["k"], n)
        _check_rows(n, min_rows, metric)
    except LayerscopeError as err:
        reasons.append((None, None, str(err)))
        return _result(metric, params, names_a, names_b, matrix, acts_a, acts_b, n, n_inputs, seed, max_points,
                       reasons, device, "none")

    prepared: dict[tuple[str, str], Any] = {}
    failed: dict[tuple[str, str], str] = {}  # (side, layer) -> why the layer cannot be compared
    pair_reasons: dict[tuple[int, int], str] = {}
    total = len(names_a) * len(names_b)
    done = 0

    def get(side: str, layer: str) -> Any:
        key = ("A" if same_run else side, layer)  # one run on both sides: prepare each layer once
        if key in failed:
            return None
        if key not in prepared:
            acts = acts_a if side == "A" else acts_b
            if progress is not None:
                progress(done, total, f"preparing layer {layer} of run {side}")
            try:
                X = _as_tensor(load(acts, layer), f"layer {layer}", device)
                prepared[key] = _prepare(metric, params, X, f"layer {layer}")
            except LayerscopeError as err:
                failed[key] = str(err)
                logger.info("similarity %s: run %s layer %s: %s", metric, side, layer, err)
                return None
        return prepared[key]

    sizes_b = [_prepared_bytes(metric, params, n, width(acts_b, layer)) for layer in names_b]
    sizes_a = [_prepared_bytes(metric, params, n, width(acts_a, layer)) for layer in names_a]
    budget = _PREPARED_BYTES // 2
    route = "pairs"
    for group_b in _groups(range(len(names_b)), sizes_b, budget):
        for group_a in _groups(range(len(names_a)), sizes_a, budget):
            keep = {("A" if same_run else "B", names_b[j]) for j in group_b} | {("A", names_a[i]) for i in group_a}
            for key in [key for key in prepared if key not in keep]:
                del prepared[key]  # free layers of earlier groups
            tile_symmetric = symmetric and group_a == group_b
            if metric in ("linear_cka", "debiased_cka"):
                route = "grams/features"
                ok_a = [i for i in group_a if get("A", names_a[i]) is not None]
                ok_b = [j for j in group_b if get("B", names_b[j]) is not None]
                if ok_a and ok_b:
                    block = _cka_matrix([get("A", names_a[i]) for i in ok_a], [get("B", names_b[j]) for j in ok_b],
                                        metric == "debiased_cka", tile_symmetric and ok_a == ok_b,
                                        allow_float32=True)
                    matrix[np.ix_(ok_a, ok_b)] = block
                done += len(group_a) * len(group_b)
                if progress is not None:
                    progress(done, total, f"{metric}: {done} of {total} layer pairs")
                continue
            pair = _PAIRS[metric]
            for i in group_a:
                a = get("A", names_a[i])
                for j in group_b:
                    if a is None:
                        break
                    if tile_symmetric and j < i:
                        matrix[i, j] = matrix[j, i]
                        if (j, i) in pair_reasons:
                            pair_reasons[i, j] = pair_reasons[j, i]
                        continue
                    b = get("B", names_b[j])
                    if b is None:
                        continue
                    try:
                        matrix[i, j] = pair(a, b)
                    except LayerscopeError as err:
                        pair_reasons[i, j] = str(err)
                done += len(group_b)
                if progress is not None:
                    progress(done, total, f"{metric}: row {names_a[i]} of run A")
    for (side, layer), why in failed.items():  # with one run on both sides a layer is a row and a column
        if (side == "A" or same_run) and layer in names_a:
            reasons.append((layer, None, why))
        if (side == "B" or same_run) and layer in names_b:
            reasons.append((None, layer, why))
    reasons.extend((names_a[i], names_b[j], why) for (i, j), why in sorted(pair_reasons.items()))
    return _result(metric, params, names_a, names_b, matrix, acts_a, acts_b, n, n_inputs, seed, max_points,
                   reasons, device, route)


def _result(metric, params, names_a, names_b, matrix, acts_a, acts_b, n, n_inputs, seed, max_points, reasons,
            device, route) -> SimilarityResult:
    def model(acts, side: str) -> str:
        return acts.model_name if isinstance(acts, Activations) else side

    return SimilarityResult(
        metric=metric,
        params=dict(params),
        layers_a=tuple(names_a),
        layers_b=tuple(names_b),
        matrix=matrix,
        run_a=acts_a.key if isinstance(acts_a, Activations) else None,
        run_b=acts_b.key if isinstance(acts_b, Activations) else None,
        n=int(n),
        n_inputs=int(n_inputs),
        seed=int(seed),
        max_points=None if max_points is None else int(max_points),
        reasons=tuple(reasons),
        info={
            "model_a": model(acts_a, "A"),
            "model_b": model(acts_b, "B"),
            "device": str(device),
            "route": route,
            "version": SIMILARITY_VERSION,
        },
    )


def _to_store(result: SimilarityResult) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = {
        "result": {
            "metric": result.metric,
            "params": result.params,
            "layers_a": list(result.layers_a),
            "layers_b": list(result.layers_b),
            "run_a": result.run_a,
            "run_b": result.run_b,
            "n": result.n,
            "n_inputs": result.n_inputs,
            "seed": result.seed,
            "max_points": result.max_points,
            "reasons": [list(r) for r in result.reasons],
            "info": result.info,
        }
    }
    return {"matrix": result.matrix}, meta


def _from_store(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> SimilarityResult:
    saved = dict(meta["result"])
    return SimilarityResult(
        matrix=np.array(arrays["matrix"]),
        layers_a=tuple(saved.pop("layers_a")),
        layers_b=tuple(saved.pop("layers_b")),
        reasons=tuple(tuple(r) for r in saved.pop("reasons")),
        **saved,
    )


# ----- summaries -------------------------------------------------------------------------
def _matrix_of(matrix: np.ndarray | SimilarityResult, higher_is_better: bool | None) -> tuple[np.ndarray, bool]:
    if isinstance(matrix, SimilarityResult):
        direction = matrix.higher_is_better if higher_is_better is None else higher_is_better
        return np.asarray(matrix.matrix, dtype=np.float64), direction
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or 0 in values.shape:
        raise LayerscopeError(f"matrix must be a non-empty 2-D array (layers A, layers B); got shape {values.shape}")
    return values, True if higher_is_better is None else higher_is_better


def best_match_per_layer(
    matrix: np.ndarray | SimilarityResult, *, higher_is_better: bool | None = None
) -> np.ndarray:
    """(La,) index of the best B layer for each A layer (argmax; argmin for distances), -1 for all-NaN rows.

    higher_is_better: default True for an array, the metric's direction for a SimilarityResult.
    """
    values, higher = _matrix_of(matrix, higher_is_better)
    scored = np.where(np.isnan(values), -np.inf, values if higher else -values)
    best = np.argmax(scored, axis=1)
    return np.where(np.isnan(values).all(axis=1), -1, best)


def best_pair(
    matrix: np.ndarray | SimilarityResult, *, higher_is_better: bool | None = None
) -> tuple[int, int, float] | None:
    """(i, j, value) of the most similar cell (max; min for distances); None if every cell is NaN."""
    values, higher = _matrix_of(matrix, higher_is_better)
    if np.isnan(values).all():
        return None
    flat = np.nanargmax(values) if higher else np.nanargmin(values)
    i, j = np.unravel_index(flat, values.shape)
    return int(i), int(j), float(values[i, j])


def diagonal_on_relative_depth(matrix: np.ndarray | SimilarityResult) -> float:
    """Mean value along the relative-depth diagonal (0 = first layer, 1 = last on both sides).

    Samples max(La, Lb) depths t in [0, 1] and reads the matrix at (t (La - 1), t (Lb - 1)) by
    bilinear interpolation; with La == Lb this is the mean of the diagonal. Samples touching a
    NaN cell with non-zero weight are left out; NaN if all are.
    """
    values, _ = _matrix_of(matrix, None)
    la, lb = values.shape
    samples = []
    for t in np.linspace(0.0, 1.0, max(la, lb)) if max(la, lb) > 1 else [0.0]:
        y, x = t * (la - 1), t * (lb - 1)
        y0, x0 = min(int(np.floor(y)), la - 1), min(int(np.floor(x)), lb - 1)
        wy, wx = y - y0, x - x0
        total = 0.0
        for dy, w_y in ((0, 1 - wy), (1, wy)):
            for dx, w_x in ((0, 1 - wx), (1, wx)):
                weight = w_y * w_x
                if weight > 1e-12:
                    total += weight * values[min(y0 + dy, la - 1), min(x0 + dx, lb - 1)]
        samples.append(total)
    samples = np.asarray(samples)
    return float(np.nanmean(samples)) if not np.isnan(samples).all() else math.nan
