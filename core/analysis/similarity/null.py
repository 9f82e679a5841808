"""Permutation null of a similarity matrix: the values unrelated rows would give.

Each draw shuffles the rows of run B with one permutation p (the same for every layer of
B) and recomputes every cell; p-value = (1 + #{draws >= observed}) / (1 + n_permutations)
(Phipson & Smyth 2010; <= for distances), so it is never 0.

Every metric here is unchanged by one permutation of both sides' rows, so shuffling B by p
gives the same value as shuffling A by p^-1: the side with fewer layers is the one moved.
Layers are prepared once; a draw only permutes prepared layers:

* linear, debiased and RBF CKA: each layer's centred (U-centred, RBF) Gram scaled to unit
  Frobenius norm, in float32; a draw gathers the moved Grams K[q][:, q] in blocks of rows
  and takes <K_q, L> for every pair at once (float32 rows summed in float64, about 1e-6);
* mutual k-NN: neighbour indices relabelled; SVCCA, Procrustes: rows of the prepared basis
  or features permuted; RSA: the RDM triangle gathered;
* any other registered metric: the moved layers prepared again from permuted rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from core.activations import Activations
from core.analysis.similarity.calibration import NullResult, compared_rows, layer_rows
from core.analysis.similarity.centring import Centred, as_tensor
from core.analysis.similarity.cka import RbfGram, _u_centring_means
from core.analysis.similarity.matrix import DEFAULT_MAX_POINTS, SIMILARITY_VERSION, Layers, similarity_matrix
from core.analysis.similarity.registry import Metric, get_metric
from core.device import pick_device
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.store import Store
from core.validation import check_int

NULL_VERSION = 1  # bump when the null's conventions change: invalidates cached nulls
DEFAULT_PERMUTATIONS = 100
PERMUTATION_STREAM = 1  # second seed word of the permutations (the row subsample uses the seed alone)
GRAM_BYTES = 2**30  # float32 Grams of the side that stays put, held at once (more layers: in groups)
BLOCK_BYTES = 4 * 2**20  # float32 rows of the still Grams per block: small enough to stay in cache
ORDERS_PER_PRODUCT = 32  # permutations whose gathered rows share one matrix product
CLIP = {"linear_cka": (0.0, 1.0), "debiased_cka": (-1.0, 1.0), "rbf_cka": (0.0, 1.0)}  # as the matrix clips


def permutation_null(
    acts_a: Layers,
    acts_b: Layers,
    metric: str = "linear_cka",
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    max_points: int | None = DEFAULT_MAX_POINTS,
    store: Store | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
    **params: Any,
) -> NullResult:
    """`similarity_matrix(...)` with a permutation null per cell: null mean, null std and p-value.

    Inputs, layers, rows (`seed`, `max_points`) and metric parameters as `similarity_matrix`;
    the permutations are drawn from (seed, PERMUTATION_STREAM). Raises when the metric is not
    defined for the inputs compared or when n! < n_permutations (too few distinct row orders).
    With `store` (Activations runs) the result is cached under kind "similarity_null".
    progress(done, total, what) counts permutations.
    """
    chosen = get_metric(metric)
    filled = chosen.fill_params(params)
    n_permutations = check_int("n_permutations", n_permutations, low=1)
    observed = similarity_matrix(acts_a, acts_b, chosen.name, layers_a=layers_a, layers_b=layers_b, store=store,
                                 seed=seed, max_points=max_points, device=device, **filled)
    n = observed.n
    chosen.check_inputs(n, filled)
    if n < 20 and math.factorial(n) < n_permutations:
        raise LayerscopeError(
            f"n_permutations={n_permutations} must be at most n! = {math.factorial(n)}, the distinct orders of "
            f"n={n} inputs; compare more inputs or ask for fewer permutations"
        )

    def compute() -> NullResult:
        rows = compared_rows(observed.n_inputs, observed.seed, observed.max_points)
        data_a = {layer: layer_rows(acts_a, layer, rows) for layer in observed.layers_a}
        data_b = {layer: layer_rows(acts_b, layer, rows) for layer in observed.layers_b}
        rng = np.random.default_rng([observed.seed, PERMUTATION_STREAM])
        perms = np.stack([rng.permutation(n) for _ in range(n_permutations)])  # (n_permutations, n): B's rows
        null, route = null_draws(data_a, data_b, chosen, filled, perms, pick_device(device), progress)
        return summarise(observed, null, chosen, route)

    if store is None or not all(isinstance(acts, Activations) for acts in (acts_a, acts_b)):
        return compute()
    key = {"run_a": acts_a.key, "run_b": acts_b.key, "metric": chosen.name, **filled,
           "layers_a": list(observed.layers_a), "layers_b": list(observed.layers_b), "seed": observed.seed,
           "max_points": observed.max_points, "n_permutations": n_permutations,
           "version": [SIMILARITY_VERSION, NULL_VERSION]}
    result = store.cached("similarity_null", key, compute, NullResult)
    report(progress, n_permutations, n_permutations, "permutation null loaded")
    return result


def summarise(observed: Any, null: np.ndarray, metric: Metric, route: str) -> NullResult:
    """The NullResult of a SimilarityResult `observed` and its draws `null` (n_permutations, La, Lb)."""
    values = observed.matrix
    with np.errstate(invalid="ignore"):
        as_extreme = null <= values if metric.is_distance else null >= values
    p_value = (1.0 + as_extreme.sum(axis=0)) / (1.0 + len(null))
    p_value = np.where(np.isfinite(values) & np.isfinite(null).all(axis=0), p_value, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = null.mean(axis=0)
        std = null.std(axis=0, ddof=1) if len(null) > 1 else np.full(values.shape, np.nan)
    return NullResult(
        metric=metric.name, params=dict(observed.params), layers_a=observed.layers_a, layers_b=observed.layers_b,
        observed=values, null_mean=mean, null_std=std, p_value=p_value, null=null.astype(np.float32),
        n_permutations=len(null), seed=observed.seed, run_a=observed.run_a, run_b=observed.run_b, n=observed.n,
        n_inputs=observed.n_inputs, max_points=observed.max_points,
        info={**observed.info, "route": route, "permuted": "rows of B", "version": NULL_VERSION,
              "p_value": "(1 + #{null as similar or more}) / (1 + n_permutations)"},
    )


def null_draws(data_a: Mapping[str, np.ndarray], data_b: Mapping[str, np.ndarray], metric: Metric,
               params: Mapping[str, Any], perms: np.ndarray, device: torch.device,
               progress: Progress | None = None) -> tuple[np.ndarray, str]:
    """(n_permutations, La, Lb) values with B's rows permuted by each row of `perms`, and the route taken.

    data_a, data_b: {layer: (n, d) array}; NaN where a layer cannot be prepared.
    """
    move_a = len(data_a) <= len(data_b)
    moved, still = (data_a, data_b) if move_a else (data_b, data_a)
    # B shuffled by p is A shuffled by p^-1
    orders = np.argsort(perms, axis=1) if move_a else perms
    if metric.name in CLIP:
        draws = _gram_draws(moved, still, metric, params, orders, device, progress)
        route = "grams"
    else:
        draws = _pair_draws(moved, still, metric, params, orders, device, progress)
        route = "prepared pairs"
    return (draws if move_a else draws.transpose(0, 2, 1)), route


def _prepare(data: Mapping[str, np.ndarray], metric: Metric, params: Mapping[str, Any],
             device: torch.device) -> list[Any]:
    """Each layer prepared once (None where the metric is undefined for it)."""
    out = []
    for layer, X in data.items():
        try:
            out.append(metric.prepare(as_tensor(X, f"layer {layer}", device), f"layer {layer}", params))
        except LayerscopeError:
            out.append(None)
    return out


# ----- CKA family: unit-norm Grams, gathered -------------------------------------------------------
def _unit_gram(metric: Metric, prepared: Any) -> torch.Tensor:
    """(n, n) float32 Gram of a prepared layer whose Frobenius products with others are the CKA values."""
    if isinstance(prepared, RbfGram):  # already centred and unit-norm, stored as diagonal + sqrt(2) * triangle
        n = prepared.diag.shape[0]
        K = torch.zeros((n, n), dtype=torch.float32, device=prepared.diag.device)
        i, j = torch.triu_indices(n, n, 1, device=K.device)
        K[i, j] = (prepared.upper / math.sqrt(2.0)).to(torch.float32)
        K = K + K.T
        K.diagonal().copy_(prepared.diag)
        return K
    c: Centred = prepared
    P = c.P.to(torch.float32)
    K = P @ P.T  # (n, n); float32 as the matrix's own large-CPU route (gram_blocks)
    if metric.name == "debiased_cka":  # U-centring (Demo `center_gram(unbiased=True)`), its terms in float64
        means = _u_centring_means(c).to(torch.float32)
        K -= means[:, None] + means[None, :]
        K.fill_diagonal_(0.0)
    return K / torch.linalg.vector_norm(K)


def _gram_draws(moved: Mapping[str, np.ndarray], still: Mapping[str, np.ndarray], metric: Metric,
                params: Mapping[str, Any], orders: np.ndarray, device: torch.device,
                progress: Progress | None) -> np.ndarray:
    """(n_permutations, L moved, L still): <K_moved[q][:, q], K_still> for each order q.

    Blocks of rows r of the still Grams small enough to stay in cache meet every order's
    gathered rows K[q[r]][:, q] in turn, so the still side is read from memory once.
    """
    n, T = orders.shape[1], len(orders)
    draws = np.full((T, len(moved), len(still)), np.nan)
    prepared_m = _prepare(moved, metric, params, device)
    ok_m = [i for i, p in enumerate(prepared_m) if p is not None]
    if not ok_m:
        return draws
    KM = torch.stack([_unit_gram(metric, prepared_m[i]) for i in ok_m])  # (Lm, n, n)
    del prepared_m
    Lm = len(ok_m)
    group = max(1, GRAM_BYTES // (4 * n * n))  # still layers held at once
    low, high = CLIP[metric.name]
    names = list(still)
    Q = torch.as_tensor(orders, device=device)
    done, total = 0, len(names) * T
    for g0 in range(0, len(names), group):
        prepared_s = _prepare({k: still[k] for k in names[g0:g0 + group]}, metric, params, device)
        ok_s = [g0 + j for j, p in enumerate(prepared_s) if p is not None]
        if not ok_s:
            continue
        KS = torch.stack([_unit_gram(metric, p) for p in prepared_s if p is not None])  # (Ls, n, n)
        del prepared_s
        step = int(np.clip(BLOCK_BYTES // (4 * len(ok_s) * n), 1, n))  # still rows per block
        cross = torch.zeros((T, Lm, len(ok_s)), dtype=torch.float64, device=device)
        gathered = torch.empty((min(T, ORDERS_PER_PRODUCT), Lm * step, n), dtype=torch.float32, device=device)
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            block = KS[:, r0:r1].reshape(len(ok_s), -1).T  # (b n, Ls), a view
            for t0 in range(0, T, ORDERS_PER_PRODUCT):
                t1 = min(T, t0 + ORDERS_PER_PRODUCT)
                rows = gathered[: t1 - t0, : Lm * (r1 - r0)]
                for t in range(t0, t1):  # rows q[r] of the moved Grams, their columns in the order q
                    torch.index_select(KM.index_select(1, Q[t, r0:r1]).view(-1, n), 1, Q[t], out=rows[t - t0])
                # one product for many orders: each still value read once meets (t1 - t0) x Lm rows
                cross[t0:t1] += (rows.reshape((t1 - t0) * Lm, -1) @ block).view(t1 - t0, Lm, -1).to(torch.float64)
            report(progress, done + (T * r1) // n * len(ok_s), total,
                   f"{T} permutations: rows {r1} of {n} of {len(ok_s)} layers of one run")
        done += T * len(ok_s)
        draws[np.ix_(range(T), ok_m, ok_s)] = cross.clamp(low, high).cpu().numpy()
        del KS
    return draws


# ----- other metrics: prepared layers permuted -----------------------------------------------------
def _permute_centred(c: Centred, q: torch.Tensor, inverse: torch.Tensor) -> Centred:
    return Centred(c.P[q], c.ssr[q])


def _permute_knn(indices: torch.Tensor, q: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    # row i of X[q] is X[q[i]]; its neighbours are the rows m with q[m] among X[q[i]]'s neighbours
    return inverse[indices[q]]


def _permute_basis(basis: Any, q: torch.Tensor, inverse: torch.Tensor) -> Any:
    return type(basis)(basis.U[q], basis.n_rank)


def _permute_triangle(vector: torch.Tensor, q: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """The upper triangle (row-major, i < j) of M[q][:, q] from that of a symmetric M."""
    n = q.shape[0]
    i, j = torch.triu_indices(n, n, 1, device=q.device)
    a, b = torch.minimum(q[i], q[j]), torch.maximum(q[i], q[j])
    return vector[a * n - a * (a + 1) // 2 + (b - a - 1)]


PERMUTE_PREPARED: dict[str, Callable[[Any, torch.Tensor, torch.Tensor], Any]] = {
    "mutual_knn": _permute_knn,
    "svcca": _permute_basis,
    "rsa": _permute_triangle,
    "orthogonal_procrustes_distance": _permute_centred,
}


def _pair_draws(moved: Mapping[str, np.ndarray], still: Mapping[str, np.ndarray], metric: Metric,
                params: Mapping[str, Any], orders: np.ndarray, device: torch.device,
                progress: Progress | None) -> np.ndarray:
    """(n_permutations, L moved, L still) by the metric's own pair function on permuted prepared layers."""
    draws = np.full((len(orders), len(moved), len(still)), np.nan)
    prepared_m = _prepare(moved, metric, params, device)
    prepared_s = _prepare(still, metric, params, device)
    permute = PERMUTE_PREPARED.get(metric.name)
    for t, order in enumerate(orders):
        q = torch.as_tensor(order, device=device)
        if permute is not None:
            inverse = torch.argsort(q)
            shuffled = [None if p is None else permute(p, q, inverse) for p in prepared_m]
        else:
            shuffled = _prepare({k: X[order] for k, X in moved.items()}, metric, params, device)
        for i, a in enumerate(shuffled):
            for j, b in enumerate(prepared_s):
                if a is None or b is None:
                    continue
                try:
                    draws[t, i, j] = metric.compare(a, b)
                except LayerscopeError:
                    pass  # undefined for this pair: NaN, as in the observed matrix
        report(progress, t + 1, len(orders), f"permutation {t + 1} of {len(orders)}")
    return draws
