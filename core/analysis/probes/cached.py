"""Probing a run's label column through the store: the task picked, the result cached under "probes"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core import codec
from core.analysis.probes.controls import check_control, resolve_control, run_word_types
from core.analysis.probes.labels import check_folds, infer_task
from core.analysis.probes.logistic import check_positive, probe_accuracy_by_layer
from core.analysis.probes.result import PROBE_VERSION, ProbeResult, make_result
from core.analysis.probes.ridge import DEFAULT_ALPHAS, check_alphas, probe_r2_by_layer
from core.errors import LayerscopeError
from core.progress import Progress
from core.runs import check_layers
from core.validation import check_int

if TYPE_CHECKING:
    from core.activations import Activations
    from core.store import Store

TASKS = ("auto", "classification", "regression")
KIND = "probes"  # the store's folder for probe results


def probe_by_layer_cached(
    acts: Activations,
    column: str,
    store: Store,
    *,
    task: str = "auto",
    layers: Sequence[str] | None = None,
    n_folds: int = 5,
    C: float = 1.0,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    control: str | bool = "auto",
    seed: int = 0,
    dropna: bool = False,
    drop_rare: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> ProbeResult:
    """Probe every layer of `acts` for label `column`, through the store.

    task: "auto" (from the column: see infer_task), "classification" (logistic,
    accuracy) or "regression" (ridge, R^2). layers: a subset of acts.layer_names
    (default all). control: "auto" (the control task when every input is a single
    word, else shuffled labels), "shuffled", "task" or "none" (core.analysis.probes.controls);
    the resolved name is recorded. The result is cached under kind "probes", keyed by
    the run, the column and every parameter that changes it; a second call reads it back.
    """
    if task not in TASKS:
        raise LayerscopeError(f"task={task!r} is not supported; choose one of {', '.join(TASKS)}")
    labels = acts.labels(column)
    resolved = infer_task(labels) if task == "auto" else task
    layer_names = list(check_layers(acts, layers))
    n_folds = check_folds(n_folds, len(labels))
    types, refusal = run_word_types(acts)
    if check_control(control) == "task" and refusal:
        raise LayerscopeError(f"control='task' is not offered for run {acts.key}: {refusal}; use control='shuffled'")
    control = resolve_control(control, types)
    params: dict[str, Any] = {
        "run": acts.key,
        "column": column,
        "task": resolved,
        "layers": layer_names,
        "n_folds": n_folds,
        "seed": int(seed),
        "control": control,
        "dropna": bool(dropna),
        "version": PROBE_VERSION,
    }
    if resolved == "classification":
        params.update(
            C=check_positive("C", C),
            max_iter=check_int("max_iter", max_iter, low=1),
            tol=check_positive("tol", tol),
            drop_rare=bool(drop_rare),
        )
    else:
        params["alphas"] = [float(a) for a in check_alphas(alphas)]

    def compute() -> ProbeResult:
        subset = {name: acts.pooled(name) for name in layer_names}  # tokens runs: mean of each input's tokens
        common = dict(n_folds=n_folds, control=control, types=types, seed=seed, dropna=dropna, device=device,
                      progress=progress)
        if resolved == "classification":
            return probe_accuracy_by_layer(
                subset, labels, C=C, max_iter=max_iter, tol=tol, drop_rare=drop_rare, **common
            )
        return probe_r2_by_layer(subset, labels, alphas=params["alphas"], **common)

    return store.cached(KIND, params, compute, ProbeResult)


def _read_legacy(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> ProbeResult:
    """A ProbeResult from the layout written before the codec: scores arrays, `details__*` arrays, meta fields."""
    details = {key.removeprefix("details__"): np.array(v) for key, v in arrays.items() if key.startswith("details__")}
    return make_result(
        meta["layer_names"],
        np.array(arrays["scores"]),
        np.array(arrays["control_scores"]),
        chance=meta["chance"],
        metric=meta["metric"],
        n=meta["n"],
        n_dropped=meta["n_dropped"],
        params=dict(meta["result_params"]),
        details=details,
    )


codec.register_legacy(ProbeResult, _read_legacy)
