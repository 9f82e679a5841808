"""Similarity of every layer of run A with every layer of run B, as one matrix.

Each layer is prepared once (centred features, kNN index sets, SVCCA bases, ranked RDMs,
centred RBF Grams; see the metric families), in float64 on CUDA when present, and the
La x Lb matrix is filled from the prepared layers: by whole blocks for metrics that have
a block route (linear and debiased CKA), pair by pair otherwise. Layers beyond the memory
budget `PREPARED_BYTES` are prepared again per group. Undefined cells are NaN with a reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from core import codec
from core.activations import Activations
from core.analysis.similarity.centring import as_tensor
from core.analysis.similarity.legacy import read_legacy_result
from core.analysis.similarity.registry import Metric, get_metric
from core.analysis.similarity.result import SimilarityResult
from core.device import pick_device
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.runs import check_layers, check_same_inputs
from core.store import Store
from core.validation import check_int

logger = logging.getLogger(__name__)

SIMILARITY_VERSION = 1  # bump when a formula or convention changes: invalidates cached results
DEFAULT_MAX_POINTS = 5000
PREPARED_BYTES = 2 * 2**30  # prepared layers held at once; beyond it layers are prepared again per group

codec.register_legacy(SimilarityResult, read_legacy_result)

Layers = Activations | Mapping[str, Any]  # a run, or {layer: (n, d) array}


def check_aligned_runs(acts_a: Activations, acts_b: Activations) -> None:
    """Raise LayerscopeError unless both runs saw the same inputs in the same order."""
    check_same_inputs(acts_a, acts_b, purpose="similarity needs rows aligned by input")


def similarity_matrix(
    acts_a: Layers,
    acts_b: Layers,
    metric: str = "linear_cka",
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
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
    chosen = get_metric(metric)
    metric_params = chosen.fill_params(params)
    seed = check_int("seed", seed)
    max_points = None if max_points is None else check_int("max_points", max_points, low=2)
    for acts, side in ((acts_a, "A"), (acts_b, "B")):
        if not isinstance(acts, (Activations, Mapping)):
            raise LayerscopeError(
                f"run {side} must be an Activations run or a mapping layer -> array; got {type(acts).__name__}"
            )
    is_run = [isinstance(acts, Activations) for acts in (acts_a, acts_b)]
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

    def compute() -> SimilarityResult:
        return _compute(acts_a, acts_b, chosen, metric_params, names_a, names_b, n_a, seed, max_points,
                        pick_device(device), progress)

    if store is None:
        return compute()
    if not all(is_run):
        raise LayerscopeError("caching with store= needs Activations runs (their keys name the entry); "
                              "pass store=None for mappings of arrays")
    cache_params = {
        "run_a": acts_a.key,
        "run_b": acts_b.key,
        "metric": chosen.name,
        **metric_params,
        "layers_a": list(names_a),
        "layers_b": list(names_b),
        "seed": seed,
        "max_points": max_points,
        "version": SIMILARITY_VERSION,
    }
    result = store.cached("similarity", cache_params, compute, SimilarityResult)
    total = len(names_a) * len(names_b)
    report(progress, total, total, "similarity loaded")
    return result


def _layers_of(acts: Layers, chosen: Sequence[str] | None, side: str) -> tuple[str, ...]:
    name = f"layers_{side.lower()}"
    if isinstance(acts, Activations):
        return check_layers(acts, chosen, name=name)
    available = tuple(acts.keys())
    if not available:
        raise LayerscopeError(f"run {side} has no layers")
    if chosen is None:
        return available
    chosen = (chosen,) if isinstance(chosen, str) else tuple(chosen)
    unknown = [layer for layer in chosen if layer not in available]
    if unknown or not chosen:
        raise LayerscopeError(
            f"{name}={list(chosen)!r}: {', '.join(map(repr, unknown)) or 'none given'} not in run {side}; "
            f"it has {', '.join(available)}"
        )
    return chosen


def _n_rows(acts: Layers, layer: str) -> int:
    return acts.n_inputs if isinstance(acts, Activations) else int(np.shape(acts[layer])[0])


def _width(acts: Layers, layer: str) -> int:
    return acts.dim(layer) if isinstance(acts, Activations) else int(np.shape(acts[layer])[1])


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


def _compute(
    acts_a: Layers,
    acts_b: Layers,
    metric: Metric,
    params: dict[str, Any],
    names_a: tuple[str, ...],
    names_b: tuple[str, ...],
    n_inputs: int,
    seed: int,
    max_points: int | None,
    device: torch.device,
    progress: Progress | None,
) -> SimilarityResult:
    rows: np.ndarray | None = None
    if max_points is not None and n_inputs > max_points:  # the same inputs at every layer: the seed fixes them
        rows = np.sort(np.random.default_rng(seed).choice(n_inputs, max_points, replace=False))
    n = n_inputs if rows is None else len(rows)
    same_run = acts_a is acts_b or (isinstance(acts_a, Activations) and isinstance(acts_b, Activations)
                                    and acts_a.key == acts_b.key)
    symmetric = same_run and names_a == names_b  # every metric here is symmetric in X and Y

    def result(matrix: np.ndarray, reasons: list, route: str) -> SimilarityResult:
        return SimilarityResult(
            metric=metric.name,
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
                "model_a": acts_a.model_name if isinstance(acts_a, Activations) else "A",
                "model_b": acts_b.model_name if isinstance(acts_b, Activations) else "B",
                "device": str(device),
                "route": route,
                "version": SIMILARITY_VERSION,
            },
        )

    def load(acts: Layers, layer: str) -> np.ndarray:
        values = acts.pooled(layer) if isinstance(acts, Activations) else acts[layer]
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        return np.asarray(values) if rows is None else np.asarray(values)[rows]

    matrix = np.full((len(names_a), len(names_b)), np.nan)
    try:
        metric.check_inputs(n, params)
    except LayerscopeError as err:
        return result(matrix, [(None, None, str(err))], "none")

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
            report(progress, done, total, f"preparing layer {layer} of run {side}")
            try:
                X = as_tensor(load(acts_a if side == "A" else acts_b, layer), f"layer {layer}", device)
                prepared[key] = metric.prepare(X, f"layer {layer}", params)
            except LayerscopeError as err:
                failed[key] = str(err)
                logger.info("similarity %s: run %s layer %s: %s", metric.name, side, layer, err)
                return None
        return prepared[key]

    sizes_a = [metric.prepared_bytes(n, _width(acts_a, layer), params) for layer in names_a]
    sizes_b = [metric.prepared_bytes(n, _width(acts_b, layer), params) for layer in names_b]
    budget = PREPARED_BYTES // 2
    route = "pairs" if metric.compare_block is None else "blocks"
    for group_b in _groups(range(len(names_b)), sizes_b, budget):
        for group_a in _groups(range(len(names_a)), sizes_a, budget):
            keep = {("A" if same_run else "B", names_b[j]) for j in group_b} | {("A", names_a[i]) for i in group_a}
            for key in [key for key in prepared if key not in keep]:
                del prepared[key]  # free layers of earlier groups
            tile_symmetric = symmetric and group_a == group_b
            if metric.compare_block is not None:
                ok_a = [i for i in group_a if get("A", names_a[i]) is not None]
                ok_b = [j for j in group_b if get("B", names_b[j]) is not None]
                if ok_a and ok_b:
                    matrix[np.ix_(ok_a, ok_b)] = metric.compare_block(
                        [get("A", names_a[i]) for i in ok_a], [get("B", names_b[j]) for j in ok_b],
                        tile_symmetric and ok_a == ok_b,
                    )
                done += len(group_a) * len(group_b)
                report(progress, done, total, f"{metric.name}: {done} of {total} layer pairs")
                continue
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
                        matrix[i, j] = metric.compare(a, b)
                    except LayerscopeError as err:
                        pair_reasons[i, j] = str(err)
                done += len(group_b)
                report(progress, done, total, f"{metric.name}: row {names_a[i]} of run A")
    reasons: list[tuple[str | None, str | None, str]] = []
    for (side, layer), why in failed.items():  # with one run on both sides a layer is a row and a column
        if (side == "A" or same_run) and layer in names_a:
            reasons.append((layer, None, why))
        if (side == "B" or same_run) and layer in names_b:
            reasons.append((None, layer, why))
    reasons.extend((names_a[i], names_b[j], why) for (i, j), why in sorted(pair_reasons.items()))
    return result(matrix, reasons, route)

