"""Centred kernel alignment: linear, debiased and RBF CKA.

* ``linear_cka``: Kornblith et al. 2019, google-research representation_similarity
  Demo.ipynb ``feature_space_linear_cka``: |Xc^T Yc|_F^2 / (|Xc^T Xc|_F |Yc^T Yc|_F).
* ``debiased_cka``: the same with the unbiased HSIC (Song et al. 2012), as the Demo's
  ``cka(gram_linear(X), gram_linear(Y), debiased=True)``; can be slightly negative.
* ``rbf_cka``: Demo ``cka(gram_rbf(X, bandwidth), gram_rbf(Y, bandwidth))``: Gaussian
  kernel with sigma^2 = bandwidth^2 * median squared distance (the median taken over the
  full n x n matrix, diagonal included, as ``gram_rbf`` does).

A matrix of linear or debiased CKA takes the cheaper of two exact float64 routes:
feature-space products |Xa^T Xb|_F^2, or centred Grams streamed in row blocks (never
n x n per layer held in memory). Large linear-CKA matrices on the CPU take float32 Gram
blocks instead (`core.analysis.similarity.gram_blocks`). Single pairs always use float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.analysis.similarity import gram_blocks
from core.analysis.similarity.centring import Centred, centre, centred, constant_error
from core.analysis.similarity.registry import Metric, pair_value, register_metric, triangle_bytes
from core.errors import LayerscopeError
from core.validation import check_number

BLOCK_BYTES = 256 * 2**20  # float64 working set of one block of Gram rows (all layers together)
FLOAT32_MIN_WORK = 1e9  # float64 multiply-adds (~0.01-0.1 s) below which linear-CKA matrices stay in float64


# ----- linear and debiased CKA ---------------------------------------------------------------
def hsic(a: Centred, b: Centred, debiased: bool) -> float:
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


def _u_centring_means(c: Centred) -> torch.Tensor:
    """(n,) row terms of the Demo's `center_gram(unbiased=True)` for the Gram P P^T."""
    n = c.P.shape[0]
    colsum = c.P @ c.P.sum(dim=0) - c.ssr  # column sums of the Gram with its diagonal zeroed
    return colsum / (n - 2.0) - colsum.sum() / (2.0 * (n - 1.0) * (n - 2.0))


def _gram_rows(c: Centred, means: torch.Tensor | None, i0: int, i1: int) -> torch.Tensor:
    """Rows i0:i1 (b, n) of the centred Gram, or of the U-centred Gram when `means` is given."""
    K = c.P[i0:i1] @ c.P.T
    if means is not None:
        K = K - means[i0:i1, None] - means[None, :]
        K[torch.arange(i1 - i0, device=K.device), torch.arange(i0, i1, device=K.device)] = 0.0
    return K


def cka_matrix(A: Sequence[Centred], B: Sequence[Centred], debiased: bool, symmetric: bool,
               allow_float32: bool = False) -> np.ndarray:
    """(len(A), len(B)) linear or debiased CKA by the cheapest route.

    The float64 routes are exact. With `allow_float32`, linear CKA on the CPU whose float64
    work exceeds `FLOAT32_MIN_WORK` takes float32 Grams with float64 sums when that is
    cheaper (within about 1e-9 of float64; see `gram_blocks`).
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
            and min(feature_cost, gram_cost) > FLOAT32_MIN_WORK and float32_cost < feature_cost):
        out = gram_blocks.linear_cka_by_float32_grams(A, B, symmetric)
    elif gram_cost < feature_cost:
        out = cka_by_gram_rows(A, B, debiased, symmetric)
    else:
        out = cka_by_features(A, B, debiased, symmetric)
    return np.clip(out, -1.0 if debiased else 0.0, 1.0)


def cka_by_features(A: Sequence[Centred], B: Sequence[Centred], debiased: bool, symmetric: bool) -> np.ndarray:
    """(len(A), len(B)) CKA from feature-space products, pair by pair; exact."""
    self_a = np.array([hsic(a, a, debiased) for a in A])
    self_b = self_a if symmetric else np.array([hsic(b, b, debiased) for b in B])
    out = np.empty((len(A), len(B)))
    for i, a in enumerate(A):
        for j, b in enumerate(B):
            if symmetric and j < i:
                out[i, j] = out[j, i]
            elif symmetric and j == i:
                out[i, j] = 1.0 if self_a[i] > 0 else math.nan
            else:
                out[i, j] = hsic(a, b, debiased) / math.sqrt(self_a[i] * self_b[j])
    return out


def cka_by_gram_rows(A: Sequence[Centred], B: Sequence[Centred], debiased: bool, symmetric: bool) -> np.ndarray:
    """CKA from centred Grams built in blocks of rows: <Ka, Kb> / (|Ka| |Kb|), exact."""
    n = A[0].P.shape[0]
    device = A[0].P.device
    means_a = [_u_centring_means(a) if debiased else None for a in A]
    means_b = means_a if symmetric else [_u_centring_means(b) if debiased else None for b in B]
    held = len(A) + (0 if symmetric else len(B))
    step = max(1, BLOCK_BYTES // (8 * n * held))
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


def _debiased_layer(X: torch.Tensor, name: str, params: Any = None) -> Centred:
    """Centred X whose debiased HSIC with itself is positive (else debiased CKA is undefined)."""
    c = centred(X, name)
    if hsic(c, c, True) <= 0:
        raise LayerscopeError(
            f"{name}: the debiased HSIC of {name} with itself is not positive (n={c.P.shape[0]} inputs is too few, "
            "or the activations are nearly constant); debiased CKA is undefined"
        )
    return c


def linear_cka(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """Linear CKA of X (n, d1) and Y (n, d2), rows aligned by input; in [0, 1]."""
    return pair_value("linear_cka", X, Y, device)


def debiased_cka(X: Any, Y: Any, *, device: str | torch.device | None = None) -> float:
    """Linear CKA with the unbiased HSIC estimator; X (n, d1), Y (n, d2), n >= 4. Near 0 for unrelated data."""
    return pair_value("debiased_cka", X, Y, device)


# ----- RBF CKA -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RbfGram:
    """Centred RBF Gram scaled to unit Frobenius norm, stored as its diagonal and sqrt(2) * upper triangle."""

    diag: torch.Tensor  # (n,)
    upper: torch.Tensor  # (n (n - 1) / 2,)


def rbf_gram(X: torch.Tensor, name: str, bandwidth: float) -> RbfGram:
    """The centred, unit-norm Gaussian Gram of X (n, d) with sigma^2 = bandwidth^2 * median d^2."""
    n = X.shape[0]
    Xc = centre(X)
    if not bool(Xc.any()):
        raise constant_error(name, n, "every kernel value is equal and CKA is 0/0")
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
        raise constant_error(name, n, "its centred RBF Gram is zero and CKA is 0/0")
    K = K / norm
    return RbfGram(torch.diagonal(K).clone(), math.sqrt(2.0) * K[mask])


def _rbf_pair(a: RbfGram, b: RbfGram) -> float:
    return min(1.0, max(0.0, float(a.diag @ b.diag + a.upper @ b.upper)))


def _check_rbf_params(params: dict[str, Any]) -> dict[str, Any]:
    # sigma as a fraction of the median distance; 1.0 in the Demo
    return {"bandwidth": check_number("bandwidth", params["bandwidth"], low=0, low_open=True)}


def rbf_cka(X: Any, Y: Any, *, bandwidth: float = 1.0, device: str | torch.device | None = None) -> float:
    """CKA with Gaussian kernels; bandwidth = sigma as a fraction of the median distance. X (n, d1), Y (n, d2)."""
    return pair_value("rbf_cka", X, Y, device, bandwidth=bandwidth)


register_metric(Metric(
    name="linear_cka",
    function=linear_cka,
    prepare=lambda X, name, params: centred(X, name),
    compare=lambda a, b: float(cka_matrix([a], [b], False, False)[0, 0]),
    compare_block=lambda A, B, symmetric: cka_matrix(A, B, False, symmetric, allow_float32=True),
    short_name="linear CKA",
    description="linear centred kernel alignment (Kornblith et al. 2019), 0 to 1",
))
register_metric(Metric(
    name="debiased_cka",
    function=debiased_cka,
    prepare=_debiased_layer,
    compare=lambda a, b: float(cka_matrix([a], [b], True, False)[0, 0]),
    compare_block=lambda A, B, symmetric: cka_matrix(A, B, True, symmetric),
    short_name="debiased CKA",
    description="linear CKA with the unbiased HSIC estimator; near 0 for unrelated data",
    min_rows=4,
))
register_metric(Metric(
    name="rbf_cka",
    function=rbf_cka,
    prepare=lambda X, name, params: rbf_gram(X, name, params["bandwidth"]),
    compare=_rbf_pair,
    short_name="RBF CKA",
    description="CKA with Gaussian kernels, bandwidth a fraction of the median distance",
    defaults={"bandwidth": 1.0},
    check_params=_check_rbf_params,
    prepared_bytes=triangle_bytes,
    variant=lambda params: f"bandwidth {params['bandwidth']:g} x median distance",
))
