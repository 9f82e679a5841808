"""Classification probes: L2 logistic regression per layer, every fold and task in one batched fit.

The loss is scikit-learn's (sum of per-sample cross-entropy + ||W||^2 / (2C), intercept
not penalised; a binary problem uses the binomial loss), on features standardised
with the mean/std of each training split, so the numbers match a loop of
`StandardScaler` + `LogisticRegression(C=C)` over the same folds. Each fold's
standardisation is folded into its weights instead of into a copy of the data, so
one product with the activations serves every fold and task; the fits run the
batched L-BFGS, preconditioned by the layer's feature correlation (an exact change
of variables: the minimiser is unchanged, it is only reached in fewer iterations).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.analysis.probes.controls import CONTROL_LABELS, control_values, input_types, resolve_control
from core.analysis.probes.inputs import check_finite, check_layer_shapes, layer_items, width_batches
from core.analysis.probes.labels import check_folds, drop_missing, drop_rare_classes, encode_classes
from core.analysis.probes.lbfgs import Objective, batched_lbfgs
from core.analysis.probes.result import PROBE_VERSION, ProbeResult, make_result
from core.device import pick_device
from core.progress import Progress, report
from core.errors import LayerscopeError
from core.validation import check_int

if TYPE_CHECKING:
    from core.activations import Activations

logger = logging.getLogger(__name__)

_DTYPE = torch.float64  # float32 stalls short of the optimum on weakly regularised, separable problems
_CONSTANT_SD = 1e-6  # a feature whose training-split std is below this (in global-std units) is constant


def check_positive(name: str, value: Any) -> float:
    """`value` (C, tol) as a positive finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise LayerscopeError(f"{name}={value!r} must be a positive finite number")
    return float(value)


def standardise_globally(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X - mean) / std over all rows, float64, and the std (d,) used; constant columns -> 0.

    Working in these units keeps the per-fold standardisation (applied to the weights
    later) well conditioned whatever the scale and offset of the activations.
    """
    X64 = X.astype(np.float64)
    mean = X64.mean(axis=0)
    std = X64.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    return (X64 - mean) / scale, scale


def _fold_stats(X: torch.Tensor, train: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-split mean and std of each fold: X (L, n, d), train (F, n) -> two (L, F, d).

    Like StandardScaler, a feature constant on the training split is divided by 1
    (in the original units, hence 1 / scale here).
    """
    weights = train.to(X.dtype) / train.sum(1, keepdim=True).to(X.dtype)  # (F, n)
    mean = torch.einsum("fn,lnd->lfd", weights, X)
    var = torch.einsum("fn,lnd->lfd", weights, X * X) - mean * mean
    sd = var.clamp_min(0).sqrt()
    sd = torch.where(sd > _CONSTANT_SD, sd, (1.0 / scale).unsqueeze(1).to(X.dtype))
    return mean, sd


def logistic_objective(
    X: torch.Tensor,
    train: torch.Tensor,
    codes: torch.Tensor,
    n_classes: int,
    C: float,
    scale: torch.Tensor,
) -> tuple[Objective, Callable[[torch.Tensor], torch.Tensor]]:
    """Loss-and-gradient and logits functions of L x F x T logistic probes sharing X.

    X (L, n, d) globally standardised, train (F, n) bool, codes (n, T) class index per
    task, scale (L, d) the global std. Problem (l, f, t) has parameters
    [Z (K, d), beta (K)]; its weights on fold-standardised features are W^T = Z^T P_l and
    its intercepts sqrt(K) beta, where P_l = sqrt(K) (Sigma_l + gamma I)^(-1/2) whitens
    the layer's feature correlation Sigma_l (the Hessian at W = 0 is about
    (Sigma + gamma I) / K, so this change of variables makes the problem round). Each
    fold's standardisation (x - mean_f) / sd_f is applied to the weights, not to X, so
    one product with X serves every fold and task. Loss per problem: mean cross-entropy
    over the fold's training rows + ||W||^2 / (2 C n_train): sklearn's objective / n_train.
    The logits function returns (L, F, T, K, n).
    """
    L, n, d = X.shape
    F, T, K = train.shape[0], codes.shape[1], n_classes
    M = F * T * K
    dtype = X.dtype
    mean, sd = _fold_stats(X, train, scale)  # (L, F, d) each
    n_train = train.sum(1).to(dtype)  # (F,)
    weight = (train.to(dtype) / n_train[:, None]).view(1, F, 1, 1, n)
    # sklearn fits a binary problem with one weight vector; the symmetric two-class softmax
    # with twice the penalty has the same minimiser and predictions.
    penalty = ((2.0 if K == 2 else 1.0) / (2.0 * C * n_train)).view(1, F, 1, 1, 1)
    gamma = float(K * 2 * penalty.mean())
    sigma = torch.bmm(X.transpose(1, 2), X) / n  # (L, d, d)
    eigval, eigvec = torch.linalg.eigh(sigma)
    root = (eigval.clamp_min(0) + gamma).rsqrt() * math.sqrt(K)
    P = (eigvec * root.unsqueeze(1)) @ eigvec.transpose(1, 2)  # (L, d, d) symmetric
    b_scale = math.sqrt(K)
    inv_sd = (1.0 / sd).view(L, F, 1, 1, d)
    shift = (mean / sd).view(L, F, 1, 1, d)
    onehot = torch.zeros(T, K, n, dtype=dtype, device=X.device)
    onehot.scatter_(1, codes.T.unsqueeze(1), 1.0)
    onehot = onehot.view(1, 1, T, K, n)
    Xt = X.transpose(1, 2)  # (L, d, n)

    def unpack(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = params.view(L, F, T, K, d + 1)
        Wt = torch.bmm(p[..., :d].reshape(L, M, d), P).view(L, F, T, K, d)
        Vt = Wt * inv_sd  # weights on X
        bias = p[..., d] * b_scale - (Wt * shift).sum(-1)  # (L, F, T, K)
        logits = torch.bmm(Vt.view(L, M, d), Xt).view(L, F, T, K, n) + bias.unsqueeze(-1)
        return Wt, logits

    def loss_and_grad(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Wt, logits = unpack(params)
        top = logits.amax(3, keepdim=True)
        e = torch.exp(logits - top)
        total = e.sum(3, keepdim=True)
        nll = (torch.log(total) + top - logits) * onehot  # only the true class survives
        loss = (nll.sum(3, keepdim=True) * weight).sum((3, 4)) + penalty.view(1, F, 1) * (Wt * Wt).sum((3, 4))
        G = (e / total - onehot) * weight  # (L, F, T, K, n) d loss / d logits
        dV = torch.bmm(G.view(L, M, n), X).view(L, F, T, K, d)
        dbias = G.sum(-1)  # (L, F, T, K)
        dW = dV * inv_sd - dbias.unsqueeze(-1) * shift + (2 * penalty) * Wt
        grad = torch.empty(L, F, T, K, d + 1, dtype=dtype, device=X.device)
        grad[..., :d] = torch.bmm(dW.view(L, M, d), P).view(L, F, T, K, d)
        grad[..., d] = dbias * b_scale
        return loss.reshape(-1), grad.view(L * F * T, -1)

    def logits_of(params: torch.Tensor) -> torch.Tensor:
        return unpack(params)[1]

    return loss_and_grad, logits_of


def _logistic_batch(
    X: torch.Tensor,
    scale: torch.Tensor,
    train: torch.Tensor,
    codes: torch.Tensor,
    n_classes: int,
    C: float,
    *,
    max_iter: int,
    tol: float,
    on_step: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Held-out accuracy of L-BFGS-fitted logistic probes for a batch of equal-width layers.

    X (L, n, d) globally standardised float, scale (L, d) the global std, train (F, n)
    bool, codes (n, T) class index for each task (real labels, control labels).
    Returns accuracy (L, F, T), accepted iterations (L, F, T), converged (L, F, T) and the
    out-of-fold predicted class of each input (L, T, n).
    """
    L, n, d = X.shape
    F, T, K = train.shape[0], codes.shape[1], n_classes
    loss_and_grad, logits_of = logistic_objective(X, train, codes, K, C, scale)
    x0 = torch.zeros(L * F * T, K * (d + 1), dtype=X.dtype, device=X.device)
    # the gradient test relative to the loss: a fixed tolerance stops nearly separable fits (shuffled
    # labels with d ~ n) before their held-out predictions settle; this one matches sklearn's optimum
    params, n_iter, converged = batched_lbfgs(
        loss_and_grad, x0, max_iter=max_iter, tol=tol, relative=True, on_step=on_step
    )
    predicted = logits_of(params).argmax(3)  # (L, F, T, n)
    correct = (predicted == codes.T.view(1, 1, T, n)).to(torch.float64)
    test = (~train).to(torch.float64).view(1, F, 1, n)
    accuracy = (correct * test).sum(-1) / test.sum(-1)  # (L, F, T)
    # each input is held out by exactly one fold: its prediction by the model that did not see it
    fold_of = (~train).to(torch.long).argmax(0)  # (n,)
    held_out = predicted.permute(0, 2, 1, 3).gather(2, fold_of.view(1, 1, 1, n).expand(L, T, 1, n)).squeeze(2)
    shape = (L, F, T)
    return (accuracy.cpu().numpy(), n_iter.view(shape).cpu().numpy(), converged.view(shape).cpu().numpy(),
            held_out.cpu().numpy())


def _fit_logistic_layers(
    items: list[tuple[str, np.ndarray]],
    keep: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    codes: np.ndarray,
    n_classes: int,
    C: float,
    max_iter: int,
    tol: float,
    device: torch.device,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, iterations and convergence (n_layers, n_folds, n_tasks) of every logistic fit,
    and each input's out-of-fold predicted class (n_layers, n_tasks, n).

    codes (n, T): class index per kept input for each task. Layers are fitted in
    batches of equal width that fit the working-memory budget.
    """
    n, T = codes.shape
    F, K = len(folds), n_classes
    train = torch.zeros(F, n, dtype=torch.bool)
    for f, (train_rows, _) in enumerate(folds):
        train[f, train_rows] = True
    train = train.to(device)
    codes_t = torch.as_tensor(codes, dtype=torch.long, device=device)
    shape = (len(items), F, T)
    accuracy, n_iter, converged = np.full(shape, np.nan), np.zeros(shape, dtype=np.int64), np.ones(shape, dtype=bool)
    held_out = np.zeros((len(items), T, n), dtype=np.int64)
    total, done_before = len(items) * F * T, 0

    def layer_bytes(d: int, M: int = F * T * K, history: int = 10) -> float:
        # X and its copy, Sigma and P, about six (M, n) temporaries, L-BFGS memory and vectors
        return 8.0 * (2 * n * d + 2 * d * d + 6 * n * M + (2 * history + 6) * M * (d + 1))

    for batch in width_batches(items, layer_bytes):
        names = ", ".join(items[i][0] for i in batch)
        blocks, scales = zip(*(standardise_globally(np.asarray(items[i][1])[keep]) for i in batch))
        X = torch.as_tensor(np.stack(blocks), dtype=_DTYPE, device=device)  # (l, n, d)
        scale = torch.as_tensor(np.stack(scales), dtype=_DTYPE, device=device)  # (l, d)

        def on_step(done: int, count: int, before: int = done_before, names: str = names) -> None:
            report(progress, before + done, total, f"logistic probes on {names}: {done}/{count} fits done")

        result = _logistic_batch(X, scale, train, codes_t, K, C, max_iter=max_iter, tol=tol, on_step=on_step)
        accuracy[batch], n_iter[batch], converged[batch], held_out[batch] = result
        done_before += len(batch) * F * T
    report(progress, total, total, "logistic probes done")
    return accuracy, n_iter, converged, held_out


def probe_accuracy_by_layer(
    layers: Mapping[str, np.ndarray] | Activations,
    labels: Any,
    *,
    n_folds: int = 5,
    C: float = 1.0,
    control: str | bool = "auto",
    types: Sequence[str] | None = None,
    seed: int = 0,
    dropna: bool = False,
    drop_rare: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> ProbeResult:
    """Cross-validated accuracy of a multinomial logistic probe on every layer.

    layers: layer name -> (n, d) array, or an Activations run (pooled).
    labels: (n,) categorical labels (strings, ints, ...).
    C: inverse L2 strength, as sklearn's LogisticRegression(C=C).
    control: the control task fitted beside the labels (core.analysis.probes.controls):
        "shuffled", "task" (one random label per word type), "none", or "auto" ("task"
        when every input is a single word, else "shuffled").
    types: (n,) the word type of each input for control="task" (default: the texts of an
        Activations run).
    dropna: drop inputs with a missing label (counted in `n_dropped`) instead of failing.
    drop_rare: drop the inputs of classes with fewer than n_folds members (counted in
        `n_dropped`, listed in params["dropped_classes"]) instead of failing.
    max_iter, tol: per-fit L-BFGS iteration cap and stopping test max|gradient| <= tol * loss
        (in the solver's whitened coordinates: stricter than sklearn's max|gradient| <= tol).
    progress: called as progress(fits_done, fits_total, message).
    Returns a ProbeResult with metric "accuracy", chance = majority-class share, and each
    input's out-of-fold predicted class and true class (held_out, held_out_target).
    """
    items = layer_items(layers)
    raw = np.asarray(labels)
    check_layer_shapes(items, len(raw))
    all_types = input_types(layers, types, len(raw))
    control = resolve_control(control, all_types)
    kept, keep = drop_missing(raw, dropna, "labels")
    n_missing = int((~keep).sum())
    n_folds = check_int("n_folds", n_folds, low=2)
    rare_classes: list[str] = []
    if drop_rare:
        kept, keep, rare_classes = drop_rare_classes(kept, keep, n_folds)
    n_folds = check_folds(n_folds, len(kept))
    C = check_positive("C", C)
    max_iter = check_int("max_iter", max_iter, low=1)
    tol = check_positive("tol", tol)
    seed = check_int("seed", seed, low=0)
    classes, codes = encode_classes(kept, n_folds)
    n, K = len(codes), len(classes)
    for name, array in items:
        check_finite(name, array)

    from sklearn.model_selection import StratifiedKFold

    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(n), codes))
    kept_types = all_types[keep] if all_types is not None else None
    control_codes = control_values(codes, control, seed, kept_types)
    tasks = [codes] + ([control_codes] if control_codes is not None else [])
    started = time.perf_counter()
    accuracy, n_iter, converged, held_out = _fit_logistic_layers(
        items, keep, folds, np.stack(tasks, axis=1), K, C, max_iter, tol, pick_device(device), progress
    )
    if not converged.all():
        logger.warning(
            "%d of %d logistic fits did not converge within max_iter=%d (max|grad| > tol * loss, tol=%g); "
            "raise max_iter or lower C",
            int((~converged).sum()),
            converged.size,
            max_iter,
            tol,
        )
    logger.info(
        "probed %d layers x %d folds x %d tasks in %.2f s (L-BFGS iterations: median %d, max %d)",
        len(items),
        n_folds,
        len(tasks),
        time.perf_counter() - started,
        int(np.median(n_iter)),
        int(n_iter.max()),
    )
    params = {
        "task": "classification",
        "C": C,
        "n_folds": n_folds,
        "seed": int(seed),
        "control": control,
        "dropna": bool(dropna),
        "max_iter": int(max_iter),
        "tol": tol,
        "drop_rare": bool(drop_rare),
        "n_missing": n_missing,
        "dropped_classes": rare_classes,
        "n_classes": K,
        "classes": [str(c) for c in classes],
        "folds": "StratifiedKFold(shuffle=True, random_state=seed)",
        "control_labels": CONTROL_LABELS[control],
        "n_types": int(len(np.unique(kept_types.astype(str)))) if control == "task" else None,
        "solver": "batched L-BFGS (torch, float64), features standardised on each training split",
        "stopping": "max|gradient| <= tol * loss (whitened coordinates), or a relative decrease "
        "below 64 eps three times running, or max_iter",
        "version": PROBE_VERSION,
    }
    has_control = len(tasks) > 1
    control_scores = accuracy[..., 1] if has_control else np.full(accuracy.shape[:2], np.nan)
    details = {"n_iter": n_iter[..., 0], "converged": converged[..., 0]}
    if has_control:
        details.update(control_n_iter=n_iter[..., 1], control_converged=converged[..., 1])
    return make_result(
        [name for name, _ in items],
        accuracy[..., 0],
        control_scores,
        chance=float(np.bincount(codes).max() / n),
        metric="accuracy",
        n=n,
        n_dropped=int((~keep).sum()),
        params=params,
        details=details,
        held_out=held_out[:, 0],
        held_out_target=codes,
    )
