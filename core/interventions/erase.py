"""Erase a concept at one layer (LEACE or a mean-difference projection) and probe what is left there and later.

Both erasers are affine, x' = x - A B (x - mu) with A (d, r), B (r, d):

* ``"leace"`` (Belrose et al. 2023; EleutherAI `concept-erasure`'s LeaceFitter): the
  closed form P = W^+ P_{W Sigma_xz} W with W = Sigma_xx^(-1/2), fitted with the empirical
  covariance (shrinkage=False) and without the trace cap (constrain_cov_trace=False), so
  it is exactly the least-squares eraser of the paper on the run's rows.
* ``"mean_difference"``: the orthogonal projection out of the span of each class mean
  minus the overall mean (concept-erasure's method="orth").

The eraser is fitted on the rows of the run at `layer` (one per input, or one per token
for a tokens run, each token carrying its input's label). Later layers are read by running
the model over the run's inputs again with the eraser applied to every position of
`layer`'s output (core.hooks.replace_output) and extracting as the run was extracted.
For mean pooling this is exact at the erased layer: an affine map applied to every token
maps the tokens' mean to the same map of their mean.

Accuracy at the erased layer is cross-fitted (the eraser fitted inside each training split,
`crossfit_accuracy`): an eraser fitted on every input drives the held-out probe far below
chance, which says nothing about what a new input would reveal. Later layers use the
eraser fitted on every input (one pass of the model).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.errors import LayerscopeError
from core.interventions.directions import layer_rows, row_labels
from core.interventions.records import ERASERS, ERASURE_VERSION, ErasureResult
from core.progress import Progress, report
from core.runs import check_layer
from core.validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    from core.activations import Activations
    from core.models import LoadedModel
    from core.store import Store

_RANK_TOL = 1e-8  # singular values below this share of the largest are dropped (numerical rank)


@dataclass(frozen=True, eq=False)
class AffineEraser:
    """x' = x - ((x - bias) @ right.T) @ left.T: a rank-r affine erasure of a d-wide layer."""

    bias: np.ndarray  # (d,) float64, the mean the erasure is taken around
    left: np.ndarray  # (d, r) float64
    right: np.ndarray  # (r, d) float64

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """X (n, d) -> erased (n, d) float64."""
        X = np.asarray(X, dtype=np.float64)
        return X - ((X - self.bias) @ self.right.T) @ self.left.T

    def apply_torch(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., d) -> erased, same shape and dtype (computed in float64)."""
        bias, left, right = (torch.as_tensor(a, device=hidden.device) for a in (self.bias, self.left, self.right))
        h = hidden.double()
        return (h - ((h - bias) @ right.T) @ left.T).to(hidden.dtype)


def one_hot(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes (K,) str, (n, K - 1) float64 one-hot without the first class: the same span, rank K - 1)."""
    classes, codes = np.unique(labels.astype(str), return_inverse=True)
    return classes, np.eye(len(classes))[codes][:, 1:]


def fit_leace(X: np.ndarray, Z: np.ndarray) -> AffineEraser:
    """The LEACE eraser of rows X (n, d) for concept Z (n, K), through concept-erasure's LeaceFitter."""
    from concept_erasure import LeaceFitter

    fitter = LeaceFitter.fit(torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Z, dtype=torch.float64),
                             method="leace", affine=True, shrinkage=False, constrain_cov_trace=False, svd_tol=1e-8)
    eraser = fitter.eraser
    return AffineEraser(eraser.bias.numpy(), eraser.proj_left.numpy(), eraser.proj_right.numpy())


def fit_mean_difference(X: np.ndarray, Z: np.ndarray) -> AffineEraser:
    """Orthogonal projection out of span{class mean - overall mean}, taken around the overall mean."""
    mu = X.mean(0)
    Z = np.column_stack([1 - Z.sum(1), Z])  # the first class back: (n, K)
    class_means = (Z.T @ X) / Z.sum(0)[:, None]  # (K, d)
    u, s, _ = np.linalg.svd((class_means - mu).T, full_matrices=False)  # (d, K)
    U = u[:, s > s.max() * _RANK_TOL]
    return AffineEraser(mu, U, U.T.copy())


FITTERS = {"leace": fit_leace, "mean_difference": fit_mean_difference}


def mean_squared_change(X: np.ndarray, eraser: AffineEraser) -> float:
    """Mean over rows of ||x - x'||^2."""
    return float(((X - eraser(X)) ** 2).sum(1).mean())


def fold_erased(acts: Activations, X: np.ndarray, method: str, label: str, n_folds: int,
                seed: int) -> dict[str, np.ndarray]:
    """(n_inputs, d) per fold: every input erased by the eraser fitted on that fold's training inputs only.

    Folds are the Probes page's, StratifiedKFold(n_folds, shuffle=True, random_state=seed) over
    the inputs with a label, split on the class codes as `probe_accuracy_by_layer` splits them,
    so fold f here is fold f of the probe. A tokens run's eraser is fitted on the training
    inputs' tokens (each carrying its input's label) and its erased tokens averaged per input.
    """
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    y = acts.labels(label)
    inputs = np.flatnonzero(~np.asarray(pd.isna(y), dtype=bool))
    codes = np.unique(y[inputs], return_inverse=True)[1]
    row_input = np.repeat(np.arange(acts.n_inputs), acts.lengths) if acts.is_tokens else np.arange(acts.n_inputs)
    row_y = y[row_input].astype(str)
    erased = {}
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(inputs)), codes)
    for f, (train, _) in enumerate(folds):
        rows = np.isin(row_input, inputs[train])
        eraser = FITTERS[method](X[rows], one_hot(row_y[rows])[1])
        erased[f"fold {f}"] = _pooled(acts, eraser(X))
    return erased


def crossfit_accuracy(acts: Activations, X: np.ndarray, method: str, label: str, n_folds: int, C: float,
                      seed: int) -> float:
    """Held-out probe accuracy after erasure, the eraser fitted on the training inputs of each fold only.

    X: (rows, d) the layer's rows (inputs, or tokens of a tokens run). The probe is the Probes
    page's (core.analysis.probes: standardised on the training split, L2 logistic regression
    with C, batched L-BFGS), read on one vector per input; fold f's probe is scored on fold
    f's held-out inputs erased by fold f's eraser, and the score is the mean over folds, as
    the accuracy before erasure is. Why cross-fitted: an eraser fitted on every input makes
    the class means exactly equal, so each training split's means lean away from its
    held-out inputs and the probe scores far below chance, which says nothing about what
    a new input would reveal. Either eraser leaves the training split's features with zero
    covariance with the one-hot labels, so the gradient of the L2 logistic loss at W = 0 (with
    the intercept at the class shares) vanishes: the optimal probe is the constant one and the
    score is, up to solver tolerance, that of predicting the training split's majority class.
    """
    from core.analysis.probes import probe_accuracy_by_layer

    erased = fold_erased(acts, X, method, label, n_folds, seed)
    result = probe_accuracy_by_layer(erased, acts.labels(label), n_folds=n_folds, C=C, seed=seed, control="none",
                                     dropna=True)
    return float(np.mean(np.diagonal(result.scores)))


def _later_layers(acts: Activations, layer: str, later_layers: str | Sequence[str] | None) -> list[str]:
    """The layers after `layer` to probe again: none, "all" of the run's, or those named (in run order)."""
    order = acts.layer_names
    after = order[order.index(layer) + 1 :]
    if later_layers is None:
        return []
    if later_layers == "all":
        return after
    chosen = [later_layers] if isinstance(later_layers, str) else list(later_layers)
    for name in chosen:
        check_layer(acts, name)
        if name not in after:
            raise LayerscopeError(
                f"later_layers: {name!r} does not come after {layer!r} in run {acts.key}; "
                f"later layers are {', '.join(after) or 'none (it is the last layer)'}"
            )
    return [name for name in after if name in chosen]


def _rerun_dataset(acts: Activations):
    """The run's inputs, to be fed to the model again."""
    from core.data import load_dataset
    from core.runs import run_dataset

    if acts.meta["dataset"].get("modality") == "text" and not acts.meta.get("has_images"):
        return run_dataset(acts)
    dataset = load_dataset(acts.dataset_spec)
    if dataset.fingerprint != acts.meta["dataset"].get("fingerprint"):
        raise LayerscopeError(
            f"dataset {acts.dataset_name!r} no longer matches run {acts.key} (its inputs changed or the run used a "
            "limit); later layers need the run's own inputs: extract the run again"
        )
    return dataset


def _check_model(model: LoadedModel, acts: Activations) -> None:
    ident = acts.meta["model"]
    if model.name != ident.get("name") or model.weights_hash != ident.get("weights", model.weights_hash):
        raise LayerscopeError(
            f"model {model.name!r} (weights {model.weights_hash[:12]}) is not the model of run {acts.key} "
            f"({ident.get('name')!r}, weights {str(ident.get('weights'))[:12]}); load that model"
        )


def erased_later_layers(model: LoadedModel, acts: Activations, layer: str, layers: Sequence[str],
                        eraser: AffineEraser, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """(n_inputs, d) per later layer, pooled as the run was, with `eraser` applied at every position of `layer`."""
    from core.extract import extract
    from core.hooks import replace_output
    from core.store import Store

    with tempfile.TemporaryDirectory(prefix="layerscope-erase-") as tmp, \
            replace_output(model.module, layer, eraser.apply_torch):
        after = extract(model, _rerun_dataset(acts), layers=list(layers), pooling=acts.pooling,
                        max_length=acts.meta.get("max_length"), store=Store(tmp), progress=progress)
        return {name: np.array(after.pooled(name), dtype=np.float64) for name in layers}


def next_token_loss(model: LoadedModel, texts: Sequence[str], layer: str, eraser: AffineEraser | None,
                    *, max_length: int | None = None, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats per predicted token) over `texts`, with `eraser` at `layer` if given."""
    import contextlib

    from core.analysis.sae.evaluation import padded_batches
    from core.hooks import replace_output

    tokenizer = model.tokenizer
    ids = [tokenizer(t, truncation=True, max_length=int(max_length or model.max_length))["input_ids"] for t in texts]
    ids = [i for i in ids if len(i) >= 2]
    if not ids:
        return math.nan
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    hooked = replace_output(model.module, layer, eraser.apply_torch) if eraser else contextlib.nullcontext()
    total, count = 0.0, 0
    with torch.inference_mode(), hooked:
        for input_ids, mask in padded_batches(ids, batch_size, pad, model.device):
            targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            logits = model.module(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
            total += float(torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                ignore_index=-100, reduction="sum"))
            count += int((targets != -100).sum())
    return total / count


def _pooled(acts: Activations, rows: np.ndarray) -> np.ndarray:
    """(n_inputs, d): `rows` of a pooled run as they are; a tokens run's rows averaged per input."""
    if not acts.is_tokens:
        return rows
    return np.add.reduceat(rows, acts.offsets[:-1], axis=0) / acts.lengths[:, None]


def erase_concept(
    model: LoadedModel | None,
    acts: Activations,
    layer: str,
    label: str,
    method: str = "leace",
    later_layers: str | Sequence[str] | None = None,
    n_folds: int = 5,
    C: float = 1.0,
    seed: int = 0,
    progress: Progress | None = None,
    store: Store | None = None,
) -> ErasureResult:
    """Erase `label` at `layer` of run `acts` and probe accuracy there (and at later layers) before and after.

    later_layers: None (the erased layer only), "all" (every later layer of the run) or names.
    Accuracy: the Probes page's cross-validated logistic probe (n_folds, C, seed) on one vector
    per input (a tokens run: the mean of its erased tokens). model: needed for later layers and
    for the next-token loss of a causal LM (None: neither).
    """
    check_choice("method", method, ERASERS)
    check_layer(acts, layer)
    n_folds = check_int("n_folds", n_folds, low=2)
    C = check_number("C", C, low=0, low_open=True)
    seed = check_int("seed", seed, low=0)
    later = _later_layers(acts, layer, later_layers)
    if later and model is None:
        raise LayerscopeError("later layers are read by running the model again; give the run's model")
    if model is not None:
        _check_model(model, acts)
    params = {"run": acts.key, "layer": layer, "method": method, "label": label, "later_layers": later,
              "n_folds": n_folds, "C": C, "seed": seed, "version": ERASURE_VERSION}

    def compute() -> ErasureResult:
        return _erase(model, acts, layer, label, method, later, n_folds, C, seed, progress, params)

    if store is None:
        return compute()
    return store.cached("erasure", params, compute, ErasureResult)


def _erase(model, acts, layer, label, method, later, n_folds, C, seed, progress, params) -> ErasureResult:
    import pandas as pd

    from core.analysis.probes import infer_task, probe_accuracy_by_layer

    labels = row_labels(acts, label)
    if infer_task(acts.labels(label)) != "classification":
        raise LayerscopeError(f"label {label!r} is numeric; erasure is measured by a classification probe: "
                              "pick a categorical label")
    X = layer_rows(acts, layer)  # (rows, d)
    known = ~np.asarray(pd.isna(labels), dtype=bool)
    classes, Z = one_hot(labels[known])
    report(progress, 0, 3, f"fitting the {method} eraser at {layer}")
    eraser = FITTERS[method](X[known], Z)
    compare = eraser if method == "mean_difference" else fit_mean_difference(X[known], Z)
    erased = eraser(X)
    centred = float(((X - X.mean(0)) ** 2).sum(1).mean())
    mse = mean_squared_change(X, eraser)

    report(progress, 1, 3, "probing before and after")
    before = {layer: _pooled(acts, X)}
    after = {layer: _pooled(acts, erased)}
    if later:
        for name in later:
            before[name] = np.asarray(acts.pooled(name), dtype=np.float64)
        after.update(erased_later_layers(model, acts, layer, later, eraser))
    input_labels = acts.labels(label)
    probe = dict(n_folds=n_folds, C=C, seed=seed, control="none", dropna=True)
    acc_before = probe_accuracy_by_layer(before, input_labels, **probe)
    acc_after = probe_accuracy_by_layer(after, input_labels, **probe).mean
    in_sample = float(acc_after[0])
    acc_after[0] = crossfit_accuracy(acts, X, method, label, n_folds, C, seed)

    loss_before = loss_after = math.nan
    if model is not None and model.is_causal_lm and model.tokenizer is not None:
        report(progress, 2, 3, "next-token loss with and without the eraser")
        texts, max_length = acts.texts, acts.meta.get("max_length")
        loss_before = next_token_loss(model, texts, layer, None, max_length=max_length)
        loss_after = next_token_loss(model, texts, layer, eraser, max_length=max_length)
    report(progress, 3, 3, "done")
    return ErasureResult(
        model_name=acts.model_name, run_key=acts.key, layer=layer, method=method, label=label,
        layer_names=(layer, *later), accuracy_before=acc_before.mean, accuracy_after=acc_after,
        chance=acc_before.chance, mean_squared_change=mse,
        mean_difference_change=mean_squared_change(X, compare),
        relative_change=mse / centred if centred > 0 else math.nan,
        loss_before=loss_before, loss_after=loss_after,
        params={**params, "classes": [str(c) for c in classes], "n": int(acc_before.n), "rows": int(known.sum()),
                "rank": int(eraser.left.shape[1]), "positions": "all",
                "erased_layer_accuracy": "eraser fitted inside each training split (cross-fitted)",
                "later_layers_accuracy": "eraser fitted on every input, applied in the model",
                "accuracy_after_in_sample": in_sample,
                "eraser": "LeaceFitter(shrinkage=False, constrain_cov_trace=False)" if method == "leace"
                else "orthogonal projection out of class-mean differences"},
    )

