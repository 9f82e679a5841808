"""Regression probes: ridge per layer, alpha by exact leave-one-out error, held-out R^2.

Features are standardised on each training split and alpha is chosen among `alphas`
on the training split by exact leave-one-out error (what `RidgeCV(alphas)` does by
default), over `KFold(n_folds, shuffle=True, random_state=seed)` folds; every layer
of one width and both tasks (targets, control targets) are solved together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.analysis.probes.controls import CONTROL_LABELS, control_values, input_types, resolve_control
from core.analysis.probes.inputs import check_finite, check_layer_shapes, layer_items, width_batches
from core.analysis.probes.labels import check_folds, drop_missing, numeric_targets
from core.analysis.probes.result import PROBE_VERSION, ProbeResult, make_result
from core.device import pick_device
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.validation import check_int

if TYPE_CHECKING:
    from core.activations import Activations

logger = logging.getLogger(__name__)

DEFAULT_ALPHAS = np.logspace(-3, 3, 13)


def check_alphas(alphas: Any) -> np.ndarray:
    """alphas as a (A,) float64 array of positive finite numbers."""
    try:
        values = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size == 0 or not np.isfinite(values).all() or (values <= 0).any():
        raise LayerscopeError(f"alphas={alphas!r} must be a non-empty list of positive finite numbers")
    return values


def _standardise_split(X_train: torch.Tensor, X_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """StandardScaler fitted on X_train (L, m, d), applied to both (constant features: divided by 1)."""
    m = X_train.shape[1]
    mean = X_train.mean(1, keepdim=True)
    var = X_train.var(1, unbiased=False, keepdim=True)
    eps = torch.finfo(X_train.dtype).eps
    constant = var <= m * eps * var + (m * mean * eps) ** 2  # sklearn's _is_constant_feature
    sd = torch.where(constant, 1.0, var.sqrt())
    return (X_train - mean) / sd, (X_test - mean) / sd


def _ridge_loo_fit(
    X_train: torch.Tensor, y_train: torch.Tensor, X_test: torch.Tensor, alphas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge with intercept, alpha picked by exact leave-one-out error (RidgeCV's GCV path).

    X_train (L, m, d) and X_test (L, m_test, d) standardised, y_train (m, T), alphas (A,).
    With the data centred, the hat matrix of alpha is 11^T/m + X (X^T X + alpha I)^-1 X^T
    (intercept unpenalised) and the leave-one-out residual is (y_i - yhat_i) / (1 - H_ii).
    Returns test predictions (L, m_test, T) and the chosen alpha index (L, T).
    """
    L, m, d = X_train.shape
    y_mean = y_train.mean(0)
    y = (y_train - y_mean).unsqueeze(0).expand(L, -1, -1)  # (L, m, T)
    if d <= m:  # eigen-decompose the d x d Gram: U = X V has the left singular vectors (scaled)
        eigval, V = torch.linalg.eigh(torch.bmm(X_train.transpose(1, 2), X_train))
        eigval = eigval.clamp_min(0)
        U = torch.bmm(X_train, V)  # (L, m, d)
        shrink = 1.0 / (eigval.unsqueeze(1) + alphas.view(1, -1, 1))  # (L, A, d)
    else:  # the m x m Gram of the rows
        eigval, U = torch.linalg.eigh(torch.bmm(X_train, X_train.transpose(1, 2)))
        eigval = eigval.clamp_min(0)
        shrink = eigval.unsqueeze(1) / (eigval.unsqueeze(1) + alphas.view(1, -1, 1))
    Uy = torch.bmm(U.transpose(1, 2), y)  # (L, k, T)
    A, k, T = shrink.shape[1], Uy.shape[1], Uy.shape[2]
    per_alpha = (shrink.unsqueeze(-1) * Uy.unsqueeze(1)).permute(0, 2, 1, 3).reshape(L, k, A * T)
    fitted = torch.bmm(U, per_alpha).view(L, m, A, T).transpose(1, 2)  # (L, A, m, T), one wide product
    leverage = torch.bmm(shrink, (U * U).transpose(1, 2)) + 1.0 / m  # (L, A, m)
    loo = (y.unsqueeze(1) - fitted) / (1.0 - leverage).unsqueeze(-1)
    error = (loo * loo).mean(2)  # (L, A, T)
    best = torch.as_tensor(np.argmin(error.cpu().numpy(), axis=1), device=X_train.device)  # first best
    chosen = shrink.gather(1, best.unsqueeze(-1).expand(L, best.shape[1], shrink.shape[2]))  # (L, T, k)
    if d <= m:
        coef = torch.bmm(V, chosen.transpose(1, 2) * Uy)  # (L, d, T)
    else:  # dual: coef = X^T U diag(1 / (lambda + alpha)) U^T y; lambda = 0 directions drop out of X^T U
        inverse = torch.where(eigval.unsqueeze(1) > 0, chosen / eigval.clamp_min(1e-300).unsqueeze(1), 0.0)
        coef = torch.bmm(X_train.transpose(1, 2), torch.bmm(U, inverse.transpose(1, 2) * Uy))
    return torch.bmm(X_test, coef) + y_mean, best


def _r2(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """sklearn's r2_score per column: y (m, T) and predictions (L, m, T) -> (L, T)."""
    residual = ((y_true - y_pred) ** 2).sum(1)
    total = ((y_true - y_true.mean(0)) ** 2).sum(0).expand_as(residual)
    r2 = 1.0 - residual / total.clamp_min(1e-300)
    return torch.where(total > 0, r2, torch.where(residual == 0, 1.0, 0.0))  # force_finite


def probe_r2_by_layer(
    layers: Mapping[str, np.ndarray] | Activations,
    targets: Any,
    *,
    n_folds: int = 5,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    control: str | bool = "auto",
    types: Sequence[str] | None = None,
    seed: int = 0,
    dropna: bool = False,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> ProbeResult:
    """Cross-validated R^2 of a ridge probe on every layer (e.g. latitude from city names).

    layers: layer name -> (n, d) array, or an Activations run (pooled).
    targets: (n,) numbers. Features are standardised on each training split; alpha is
    chosen among `alphas` on the training split by exact leave-one-out error, as
    `make_pipeline(StandardScaler(), RidgeCV(alphas))`; folds are
    `KFold(n_folds, shuffle=True, random_state=seed)`.
    control: "shuffled", "task" (one target per word type, drawn from the targets), "none",
        or "auto" ("task" when every input is a single word, else "shuffled"); see
        core.analysis.probes.controls. types: (n,) word type of each input for "task"
        (default: the texts of an Activations run).
    progress: called as progress(steps_done, steps_total, message).
    Returns a ProbeResult with metric "r2", chance 0.0, details["alpha"] (n_layers, n_folds), and
    each input's out-of-fold prediction and target (held_out, held_out_target).
    """
    items = layer_items(layers)
    raw = np.asarray(targets)
    check_layer_shapes(items, len(raw))
    all_types = input_types(layers, types, len(raw))
    control = resolve_control(control, all_types)
    kept, keep = drop_missing(raw, dropna, "targets")
    values = numeric_targets(kept)
    n = len(values)
    n_folds = check_folds(n_folds, n)
    if n < 2 * n_folds:
        raise LayerscopeError(
            f"there are {n} inputs, fewer than 2 * n_folds={2 * n_folds}: R^2 needs at least two inputs "
            "in each held-out fold; lower n_folds or add inputs"
        )
    alpha_values = check_alphas(alphas)
    seed = check_int("seed", seed, low=0)
    for name, array in items:
        check_finite(name, array)

    from sklearn.model_selection import KFold

    folds = list(KFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(n)))
    control_targets = control_values(values, control, seed, all_types[keep] if all_types is not None else None)
    tasks = [values] + ([control_targets] if control_targets is not None else [])
    device = pick_device(device)
    Y = torch.as_tensor(np.stack(tasks, axis=1), dtype=torch.float64, device=device)  # (n, T)
    alphas_t = torch.as_tensor(alpha_values, dtype=torch.float64, device=device)
    L, T, A = len(items), len(tasks), len(alpha_values)
    scores = np.full((L, n_folds, 2), np.nan)
    chosen = np.full((L, n_folds, 2), np.nan)
    held_out = np.full((L, n), np.nan)  # each input's prediction by the fold model that did not see it
    batches = width_batches(items, lambda d: 8.0 * (4 * n * d + 3 * min(d, n) ** 2 + 3 * A * n * T))
    total, done = len(batches) * n_folds, 0
    started = time.perf_counter()
    for batch in batches:
        X = torch.as_tensor(
            np.stack([np.asarray(items[i][1])[keep] for i in batch]), dtype=torch.float64, device=device
        )  # (l, n, d)
        for f, (train_rows, test_rows) in enumerate(folds):
            tr = torch.as_tensor(train_rows, device=device)
            te = torch.as_tensor(test_rows, device=device)
            X_train, X_test = _standardise_split(X[:, tr], X[:, te])
            predicted, best = _ridge_loo_fit(X_train, Y[tr], X_test, alphas_t)
            scores[batch, f, :T] = _r2(Y[te], predicted).cpu().numpy()
            held_out[np.ix_(batch, test_rows)] = predicted[..., 0].cpu().numpy()
            chosen[batch, f, :T] = alpha_values[best.cpu().numpy()]
            done += 1
            names = ", ".join(items[i][0] for i in batch)
            report(progress, done, total, f"ridge probes on {names}: fold {f + 1}/{n_folds}")
    logger.info("ridge-probed %d layers x %d folds in %.2f s", L, n_folds, time.perf_counter() - started)
    params = {
        "task": "regression",
        "alphas": [float(a) for a in alpha_values],
        "n_folds": n_folds,
        "seed": int(seed),
        "control": control,
        "dropna": bool(dropna),
        "folds": "KFold(shuffle=True, random_state=seed)",
        "control_labels": CONTROL_LABELS[control],
        "solver": "ridge, alpha by exact leave-one-out on the training split (float64)",
        "version": PROBE_VERSION,
    }
    return make_result(
        [name for name, _ in items],
        scores[..., 0],
        scores[..., 1],  # NaN without control
        chance=0.0,
        metric="r2",
        n=n,
        n_dropped=int((~keep).sum()),
        params=params,
        details={"alpha": chosen[..., 0], "control_alpha": chosen[..., 1]},
        held_out=held_out,
        held_out_target=values,
    )
