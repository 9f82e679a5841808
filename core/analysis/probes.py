"""Linear probes per layer: how well a label can be read out of each layer (METRICS.md).

Classification: multinomial logistic regression with an L2 penalty, in scikit-learn's
convention (loss = sum of per-sample cross-entropy + ||W||^2 / (2C), intercept not
penalised; a binary problem uses the binomial loss, as sklearn does), features
standardised with the mean/std of the training split only, and
`StratifiedKFold(n_folds, shuffle=True, random_state=seed)` folds, so the numbers
match a loop of `StandardScaler` + `LogisticRegression(C=C)` over the same folds.

Regression: ridge on standardised features, alpha picked on the training split by
exact leave-one-out error (what `RidgeCV(alphas)` does by default), held-out R^2,
`KFold(n_folds, shuffle=True, random_state=seed)` folds.

Control task (Hewitt & Liang 2019): the same probe on labels shuffled with
`numpy.random.default_rng(seed).permutation`; selectivity = score - control score.

All folds, both tasks and every layer of one width are fitted as one batched problem
in torch (on the GPU when there is one): the activations are read once per function
evaluation for all folds, because each fold's standardisation is folded into its
weights instead of into a copy of the data. The logistic fits run a batched L-BFGS
in which every problem keeps its own curvature memory, step size and stopping test,
preconditioned by the layer's feature correlation (an exact change of variables: the
minimiser is unchanged, it is only reached in fewer iterations).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.device import pick_device
from core.errors import LayerscopeError

if TYPE_CHECKING:
    import pandas as pd

    from core.activations import Activations
    from core.store import Store

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]

PROBE_VERSION = 1  # bump when a change alters stored results
DEFAULT_ALPHAS = np.logspace(-3, 3, 13)
MAX_CLASSES = 200  # more distinct labels than this is almost surely a numeric target
AUTO_MAX_CLASSES = 20  # task="auto": a numeric column with more distinct values is regression
TASKS = ("auto", "classification", "regression")
_MEMORY_BYTES = 1 << 30  # working memory per batch of layers
_DTYPE = torch.float64  # float32 stalls short of the optimum on weakly regularised, separable problems
_CONSTANT_SD = 1e-6  # a feature whose training-split std is below this (in global-std units) is constant


# ----- result -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ProbeResult:
    """Held-out probe scores for every layer of one run, with the control task.

    Arrays are float64 in `layer_names` order. Standard deviations are over folds
    (ddof=0, as `cross_val_score(...).std()`). With `control=False` the control
    arrays are NaN.
    """

    layer_names: tuple[str, ...]  # probed layers, in the order given
    mean: np.ndarray  # (n_layers,) mean held-out score over folds
    std: np.ndarray  # (n_layers,) std of the held-out score over folds
    scores: np.ndarray  # (n_layers, n_folds) held-out score of each fold
    control_mean: np.ndarray  # (n_layers,) the same for shuffled labels
    control_std: np.ndarray  # (n_layers,)
    control_scores: np.ndarray  # (n_layers, n_folds)
    chance: float  # majority-class share (accuracy); 0.0 for R^2 (predicting the mean)
    metric: str  # "accuracy" or "r2"
    n: int  # inputs used
    n_dropped: int  # inputs dropped because their label was missing (dropna=True)
    params: dict[str, Any] = field(default_factory=dict)  # task, C or alphas, n_folds, seed, ...
    details: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "alpha" or "n_iter", (n_layers, n_folds)

    @property
    def best_layer(self) -> str:
        """The layer with the highest mean held-out score (the first one on a tie)."""
        return self.layer_names[int(np.nanargmax(self.mean))]

    @property
    def selectivity(self) -> np.ndarray:
        """(n_layers,) score minus control score (Hewitt & Liang 2019)."""
        return self.mean - self.control_mean

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: layer, metric, mean, std, control_mean, control_std, selectivity, chance."""
        import pandas as pd

        return pd.DataFrame(
            {
                "layer": list(self.layer_names),
                "metric": self.metric,
                "mean": self.mean,
                "std": self.std,
                "control_mean": self.control_mean,
                "control_std": self.control_std,
                "selectivity": self.selectivity,
                "chance": self.chance,
            }
        )


def _make_result(
    layer_names: Sequence[str],
    scores: np.ndarray,
    control_scores: np.ndarray,
    *,
    chance: float,
    metric: str,
    n: int,
    n_dropped: int,
    params: dict[str, Any],
    details: dict[str, np.ndarray],
) -> ProbeResult:
    scores = np.asarray(scores, dtype=np.float64)
    control_scores = np.asarray(control_scores, dtype=np.float64)
    return ProbeResult(
        layer_names=tuple(layer_names),
        mean=scores.mean(axis=1),
        std=scores.std(axis=1),
        scores=scores,
        control_mean=control_scores.mean(axis=1),
        control_std=control_scores.std(axis=1),
        control_scores=control_scores,
        chance=float(chance),
        metric=metric,
        n=int(n),
        n_dropped=int(n_dropped),
        params=params,
        details={k: np.asarray(v) for k, v in details.items()},
    )


# ----- input checks -------------------------------------------------------------------------------
def _layer_items(layers: Any) -> list[tuple[str, np.ndarray]]:
    """(name, (n, d) array) pairs from a Mapping or an Activations run."""
    from core.activations import Activations

    if isinstance(layers, Activations):
        if layers.is_tokens:
            raise LayerscopeError(
                f"run {layers.key} holds one vector per token (pooling='tokens') but a probe needs one "
                "vector per input; extract with pooling='mean' (or 'first'/'last')"
            )
        return [(name, layers[name]) for name in layers.layer_names]
    if isinstance(layers, Mapping):
        items = [(str(name), array) for name, array in layers.items()]
    else:
        raise LayerscopeError(
            f"layers must be a mapping of layer name -> (n, d) array or an Activations run, "
            f"not {type(layers).__name__}"
        )
    if not items:
        raise LayerscopeError("layers is empty; give at least one layer")
    return items


def _check_layers(items: list[tuple[str, np.ndarray]], n_labels: int) -> None:
    for name, array in items:
        shape = getattr(array, "shape", None)
        if shape is None or len(shape) != 2:
            raise LayerscopeError(f"layer {name!r} must be a 2-D (n, d) array, got shape {shape}")
        if shape[0] != n_labels:
            raise LayerscopeError(
                f"layer {name!r} has {shape[0]} rows but there are {n_labels} labels; "
                "give one label per input"
            )
        if shape[1] < 1:
            raise LayerscopeError(f"layer {name!r} has no features (shape {shape})")


def _check_finite(name: str, X: np.ndarray) -> None:
    """Raise if the (n, d) activations of layer `name` hold NaN or inf."""
    bad_rows = 0
    for start in range(0, X.shape[0], 8192):  # blocks: a memmapped layer may not fit in memory twice
        bad_rows += int((~np.isfinite(np.asarray(X[start : start + 8192]))).any(axis=1).sum())
    if bad_rows:
        raise LayerscopeError(
            f"layer {name!r} has NaN/inf values in {bad_rows} of {X.shape[0]} rows; "
            "the activations overflowed or were written incompletely: extract them again in float32"
        )


def _missing_mask(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.isna(values), dtype=bool).reshape(len(values))


def _drop_missing(values: Any, dropna: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept values, keep mask) after handling missing labels."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise LayerscopeError(f"{what} must be 1-D with one value per input, got shape {values.shape}")
    missing = _missing_mask(values)
    n_missing = int(missing.sum())
    if n_missing and not dropna:
        raise LayerscopeError(
            f"{what} have {n_missing} missing values (NaN/None) out of {len(values)}; "
            "pass dropna=True to probe the inputs that have one"
        )
    return values[~missing], ~missing


def _show(value: Any) -> str:
    """repr of a label value as the user wrote it (numpy scalars as Python ones)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_folds(n_folds: Any, n: int) -> int:
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise LayerscopeError(f"n_folds={n_folds!r} must be an integer >= 2")
    if n < n_folds:
        raise LayerscopeError(f"there are {n} inputs, fewer than n_folds={n_folds}; lower n_folds or add inputs")
    return int(n_folds)


def _drop_rare_classes(
    kept: np.ndarray, keep: np.ndarray, n_folds: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels and keep mask without the classes that have fewer than n_folds members."""
    try:
        values, counts = np.unique(kept, return_counts=True)
    except TypeError:
        return kept, keep, []  # mixed types: _encode_classes explains
    rare = values[counts < n_folds]
    if rare.size == 0:
        return kept, keep, []
    rare_rows = np.isin(kept, rare)
    keep = keep.copy()
    keep[np.flatnonzero(keep)[rare_rows]] = False
    logger.info("dropped %d inputs of %d classes with fewer than %d members", rare_rows.sum(), rare.size, n_folds)
    return kept[~rare_rows], keep, [str(v) for v in rare]


def _encode_classes(labels: np.ndarray, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, codes) for categorical labels, after checking they can be probed."""
    try:
        classes, codes = np.unique(labels, return_inverse=True)
    except TypeError as err:
        raise LayerscopeError(
            "labels mix types (e.g. numbers and strings) and cannot be sorted into classes; "
            "convert them to one type first"
        ) from err
    n, k = len(labels), len(classes)
    if k < 2:
        raise LayerscopeError(f"labels have one class ({_show(classes[0])}); a probe needs at least 2 classes")
    limit = min(MAX_CLASSES, n // 2)
    if k > limit:
        raise LayerscopeError(
            f"labels have {k} distinct values, more than the {limit} allowed for {n} inputs "
            f"(at most {MAX_CLASSES} and at most half the inputs); for a numeric target use "
            "probe_r2_by_layer (task='regression'), otherwise group rare labels"
        )
    counts = np.bincount(codes, minlength=k)
    small = np.flatnonzero(counts < n_folds)
    if small.size:
        shown = ", ".join(f"{_show(classes[i])} ({counts[i]})" for i in small[:5])
        more = f" and {small.size - 5} more" if small.size > 5 else ""
        which = "1 class has" if small.size == 1 else f"{small.size} classes have"
        raise LayerscopeError(
            f"{which} fewer members than n_folds={n_folds}: {shown}{more}; "
            "pass drop_rare=True to leave them out, merge them, or lower n_folds"
        )
    return classes, codes


def _check_positive(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise LayerscopeError(f"{name}={value!r} must be a positive finite number")
    return number


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LayerscopeError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _width_batches(items: list[tuple[str, np.ndarray]], bytes_per_layer: Callable[[int], float]) -> list[list[int]]:
    """Indices of layers to fit together: equal widths, within the working-memory budget."""
    by_width: dict[int, list[int]] = {}
    for i, (_, array) in enumerate(items):
        by_width.setdefault(int(array.shape[1]), []).append(i)
    batches = []
    for d, indices in by_width.items():
        size = max(1, int(_MEMORY_BYTES // max(bytes_per_layer(d), 1)))
        batches += [indices[i : i + size] for i in range(0, len(indices), size)]
    return batches


def _standardise_globally(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


# ----- batched L-BFGS -------------------------------------------------------------------------------
def _lbfgs_direction(g: torch.Tensor, S: torch.Tensor, Y: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """-H g for each problem, H the L-BFGS inverse Hessian in compact form (Byrd, Nocedal & Schnabel 1994).

    g (B, p); memory S, Y (B, m, p), oldest first; filled (B, m) marks slots holding a
    pair (empty slots are zero and drop out). A few batched matrix products instead of
    the 4m vector operations of the two-loop recursion: on a busy CPU each small
    operation costs about the same whatever its size.
    """
    SY = torch.bmm(S, Y.transpose(1, 2))  # (B, m, m): s_i . y_j
    YY = torch.bmm(Y, Y.transpose(1, 2))
    diag = torch.diagonal(SY, dim1=1, dim2=2)  # (B, m) s_i . y_i
    # gamma = s.y / y.y of the newest pair: the scale of the initial inverse Hessian
    newest = filled[:, -1]
    gamma = torch.where(newest, diag[:, -1] / torch.diagonal(YY, dim1=1, dim2=2)[:, -1].clamp_min(1e-30), 1.0)
    R = torch.triu(SY) + torch.diag_embed((~filled).to(g.dtype))  # empty slots: 1 on the diagonal
    gv = g.unsqueeze(-1)  # (B, p, 1)
    a = torch.bmm(S, gv)  # (B, m, 1)
    b = torch.bmm(Y, gv)
    r = torch.linalg.solve_triangular(R, a, upper=True)
    gamma3 = gamma.view(-1, 1, 1)
    t = (diag.unsqueeze(-1) * r + gamma3 * torch.bmm(YY, r)) - gamma3 * b
    u = torch.linalg.solve_triangular(R.transpose(1, 2), t, upper=False)
    Hg = gamma3 * gv + torch.bmm(S.transpose(1, 2), u) - gamma3 * torch.bmm(Y.transpose(1, 2), r)
    return -Hg.squeeze(-1)


def _batched_lbfgs(
    fun: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    history: int = 10,
    max_backtracks: int = 30,
    c1: float = 1e-4,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimise B independent smooth problems at once: fun(x (B, p)) -> (f (B,), grad (B, p)).

    Each problem has its own L-BFGS memory, step and stopping tests (max |grad| <= tol,
    as scipy's pgtol in sklearn's lbfgs, or a relative decrease below 64 eps three
    times running, as scipy's factr). The Armijo backtracking is pipelined: a
    problem whose trial step fails retries a shorter one at the next evaluation while
    the others move on, so every evaluation of `fun` advances every problem.
    Returns x, accepted iterations (B,) and converged (B,) bool.
    """
    B, p = x.shape
    f, g = fun(x)
    S = x.new_zeros(B, history, p)
    Y = x.new_zeros(B, history, p)
    filled = torch.zeros(B, history, dtype=torch.bool, device=x.device)
    n_iter = torch.zeros(B, dtype=torch.long, device=x.device)
    backtracks = torch.zeros(B, dtype=torch.long, device=x.device)
    converged = g.abs().amax(1) <= tol
    active = ~converged
    direction = -g
    step = torch.ones(B, dtype=x.dtype, device=x.device)
    slope = (g * direction).sum(1)
    stalled = torch.zeros(B, dtype=torch.long, device=x.device)
    ftol = 64 * torch.finfo(x.dtype).eps  # scipy's factr test as sklearn sets it, in this precision
    n_eval = 0
    while bool(active.any()) and n_eval < 3 * max_iter:
        trial = torch.addcmul(x, (step * active).unsqueeze(1), direction)
        f_new, g_new = fun(trial)
        n_eval += 1
        ok = active & (f_new <= f + c1 * step * slope)  # NaN/inf fail
        # accepted steps: keep the pair where the curvature s.y stays positive
        s, y = trial - x, g_new - g
        sy = (s * y).sum(1)
        good = ok & (sy > 1e-10 * s.norm(dim=1) * y.norm(dim=1))
        if bool(good.any()):
            keep = good.view(B, 1, 1)
            S = torch.where(keep, torch.cat([S[:, 1:], s.unsqueeze(1)], 1), S)
            Y = torch.where(keep, torch.cat([Y[:, 1:], y.unsqueeze(1)], 1), Y)
            filled = torch.where(good.view(B, 1), torch.cat([filled[:, 1:], good.view(B, 1)], 1), filled)
        tiny = (f - f_new) <= ftol * torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f))
        stalled = torch.where(ok, torch.where(tiny, stalled + 1, 0), stalled)
        x = torch.where(ok.unsqueeze(1), trial, x)
        f = torch.where(ok, f_new, f)
        g = torch.where(ok.unsqueeze(1), g_new, g)
        n_iter += ok.long()
        # converged: the gradient test, or no decrease left in this precision (scipy's factr test)
        converged |= ok & ((g.abs().amax(1) <= tol) | (stalled >= 3))
        # failed steps: shrink by safeguarded quadratic interpolation
        failed = active & ~ok
        backtracks = torch.where(failed, backtracks + 1, 0)
        curvature = 2 * (f_new - f - slope * step)
        shorter = torch.where(curvature > 0, -slope * step * step / curvature.clamp_min(1e-30), 0.5 * step)
        shorter = torch.minimum(torch.maximum(shorter, 0.1 * step), 0.5 * step)
        # a problem that cannot descend any more is at the limit of the arithmetic: stop it
        active = active & ~converged & (n_iter < max_iter) & (backtracks <= max_backtracks)
        if bool(ok.any()):
            new_direction = _lbfgs_direction(g, S, Y, filled)
            new_slope = (g * new_direction).sum(1)
            reset = ok & ~(new_slope < 0)
            if bool(reset.any()):  # memory went bad: restart from steepest descent
                filled = filled & ~reset.view(B, 1)
                S = torch.where(reset.view(B, 1, 1), 0.0, S)
                Y = torch.where(reset.view(B, 1, 1), 0.0, Y)
                new_direction = torch.where(reset.unsqueeze(1), -g, new_direction)
                new_slope = (g * new_direction).sum(1)
            direction = torch.where(ok.unsqueeze(1), new_direction, direction)
            slope = torch.where(ok, new_slope, slope)
        step = torch.where(ok, 1.0, torch.where(failed, shorter, step))
        if on_step is not None:
            on_step(int((~active).sum()), B)
    return x, n_iter, converged


# ----- logistic regression ---------------------------------------------------------------------------
def _logistic_objective(
    X: torch.Tensor,
    train: torch.Tensor,
    codes: torch.Tensor,
    n_classes: int,
    C: float,
    scale: torch.Tensor,
) -> tuple[Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], Callable[[torch.Tensor], torch.Tensor]]:
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

    def unpack(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = params.view(L, F, T, K, d + 1)
        Wt = torch.bmm(p[..., :d].reshape(L, M, d), P).view(L, F, T, K, d)
        Vt = Wt * inv_sd  # weights on X
        bias = p[..., d] * b_scale - (Wt * shift).sum(-1)  # (L, F, T, K)
        logits = torch.bmm(Vt.view(L, M, d), Xt).view(L, F, T, K, n) + bias.unsqueeze(-1)
        return Wt, logits, p

    def loss_and_grad(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Wt, logits, _ = unpack(params)
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out accuracy of L-BFGS-fitted logistic probes for a batch of equal-width layers.

    X (L, n, d) globally standardised float, scale (L, d) the global std, train (F, n)
    bool, codes (n, T) class index for each task (real labels, control labels).
    Returns accuracy (L, F, T), accepted iterations (L, F, T), converged (L, F, T).
    """
    L, n, d = X.shape
    F, T, K = train.shape[0], codes.shape[1], n_classes
    loss_and_grad, logits_of = _logistic_objective(X, train, codes, K, C, scale)
    x0 = torch.zeros(L * F * T, K * (d + 1), dtype=X.dtype, device=X.device)
    params, n_iter, converged = _batched_lbfgs(loss_and_grad, x0, max_iter=max_iter, tol=tol, on_step=on_step)
    predicted = logits_of(params).argmax(3)  # (L, F, T, n)
    correct = (predicted == codes.T.view(1, 1, T, n)).to(torch.float64)
    test = (~train).to(torch.float64).view(1, F, 1, n)
    accuracy = (correct * test).sum(-1) / test.sum(-1)  # (L, F, T)
    shape = (L, F, T)
    return accuracy.cpu().numpy(), n_iter.view(shape).cpu().numpy(), converged.view(shape).cpu().numpy()


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
    progress: ProgressCallback | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, iterations and convergence (n_layers, n_folds, n_tasks) of every logistic fit.

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
    total, done_before = len(items) * F * T, 0

    def layer_bytes(d: int, M: int = F * T * K, history: int = 10) -> float:
        # X and its copy, Sigma and P, about six (M, n) temporaries, L-BFGS memory and vectors
        return 8.0 * (2 * n * d + 2 * d * d + 6 * n * M + (2 * history + 6) * M * (d + 1))

    for batch in _width_batches(items, layer_bytes):
        names = ", ".join(items[i][0] for i in batch)
        blocks, scales = zip(*(_standardise_globally(np.asarray(items[i][1])[keep]) for i in batch))
        X = torch.as_tensor(np.stack(blocks), dtype=_DTYPE, device=device)  # (l, n, d)
        scale = torch.as_tensor(np.stack(scales), dtype=_DTYPE, device=device)  # (l, d)

        def on_step(done: int, count: int, before: int = done_before, names: str = names) -> None:
            if progress is not None:
                progress(before + done, total, f"logistic probes on {names}: {done}/{count} fits done")

        result = _logistic_batch(X, scale, train, codes_t, K, C, max_iter=max_iter, tol=tol, on_step=on_step)
        accuracy[batch], n_iter[batch], converged[batch] = result
        done_before += len(batch) * F * T
    if progress is not None:
        progress(total, total, "logistic probes done")
    return accuracy, n_iter, converged


def probe_accuracy_by_layer(
    layers: Mapping[str, np.ndarray] | Activations,
    labels: Any,
    *,
    n_folds: int = 5,
    C: float = 1.0,
    control: bool = True,
    seed: int = 0,
    dropna: bool = False,
    drop_rare: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> ProbeResult:
    """Cross-validated accuracy of a multinomial logistic probe on every layer.

    layers: layer name -> (n, d) array, or an Activations run (pooled).
    labels: (n,) categorical labels (strings, ints, ...).
    C: inverse L2 strength, as sklearn's LogisticRegression(C=C).
    control: also fit the probe on labels shuffled with the seed (Hewitt & Liang).
    dropna: drop inputs with a missing label (counted in `n_dropped`) instead of failing.
    drop_rare: drop the inputs of classes with fewer than n_folds members (counted in
        `n_dropped`, listed in params["dropped_classes"]) instead of failing.
    max_iter, tol: per-fit L-BFGS iteration cap and max-|gradient| stopping test.
    progress: called as progress(fits_done, fits_total, message).
    Returns a ProbeResult with metric "accuracy" and chance = majority-class share.
    """
    items = _layer_items(layers)
    raw = np.asarray(labels)
    _check_layers(items, len(raw))
    kept, keep = _drop_missing(raw, dropna, "labels")
    n_missing = int((~keep).sum())
    n_folds = _check_int("n_folds", n_folds, 2)
    rare_classes: list[str] = []
    if drop_rare:
        kept, keep, rare_classes = _drop_rare_classes(kept, keep, n_folds)
    n_folds = _check_folds(n_folds, len(kept))
    C = _check_positive("C", C)
    max_iter = _check_int("max_iter", max_iter, 1)
    tol = _check_positive("tol", tol)
    seed = _check_int("seed", seed, 0)
    classes, codes = _encode_classes(kept, n_folds)
    n, K = len(codes), len(classes)
    for name, array in items:
        _check_finite(name, array)

    from sklearn.model_selection import StratifiedKFold

    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(n), codes))
    tasks = [codes] + ([np.random.default_rng(seed).permutation(codes)] if control else [])
    started = time.perf_counter()
    accuracy, n_iter, converged = _fit_logistic_layers(
        items, keep, folds, np.stack(tasks, axis=1), K, C, max_iter, tol, pick_device(device), progress
    )
    if not converged.all():
        logger.warning(
            "%d of %d logistic fits did not converge within max_iter=%d (max|grad| > tol=%g); "
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
        "control": bool(control),
        "dropna": bool(dropna),
        "max_iter": int(max_iter),
        "tol": tol,
        "drop_rare": bool(drop_rare),
        "n_missing": n_missing,
        "dropped_classes": rare_classes,
        "n_classes": K,
        "classes": [str(c) for c in classes],
        "folds": "StratifiedKFold(shuffle=True, random_state=seed)",
        "control_labels": "numpy.random.default_rng(seed).permutation(labels)",
        "solver": "batched L-BFGS (torch, float64), features standardised on each training split",
        "version": PROBE_VERSION,
    }
    control_scores = accuracy[..., 1] if control else np.full(accuracy.shape[:2], np.nan)
    return _make_result(
        [name for name, _ in items],
        accuracy[..., 0],
        control_scores,
        chance=float(np.bincount(codes).max() / n),
        metric="accuracy",
        n=n,
        n_dropped=int((~keep).sum()),
        params=params,
        details={"n_iter": n_iter[..., 0], "converged": converged[..., 0]},
    )


# ----- ridge regression ----------------------------------------------------------------------------
def _numeric_targets(values: np.ndarray) -> np.ndarray:
    try:
        targets = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        example = next((v for v in values if not isinstance(v, (int, float, np.number))), values[0])
        raise LayerscopeError(
            f"targets must be numbers, got values such as {_show(example)}; "
            "for categories use probe_accuracy_by_layer (task='classification')"
        ) from err
    if not np.isfinite(targets).all():
        raise LayerscopeError(f"targets hold {int((~np.isfinite(targets)).sum())} infinite values; remove them")
    if np.ptp(targets) == 0:
        raise LayerscopeError(f"targets are constant ({_show(targets[0])}); R^2 needs targets that vary")
    return targets


def _check_alphas(alphas: Any) -> np.ndarray:
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
    control: bool = True,
    seed: int = 0,
    dropna: bool = False,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> ProbeResult:
    """Cross-validated R^2 of a ridge probe on every layer (e.g. latitude from city names).

    layers: layer name -> (n, d) array, or an Activations run (pooled).
    targets: (n,) numbers. Features are standardised on each training split; alpha is
    chosen among `alphas` on the training split by exact leave-one-out error, as
    `make_pipeline(StandardScaler(), RidgeCV(alphas))`; folds are
    `KFold(n_folds, shuffle=True, random_state=seed)`.
    control: also fit on targets shuffled with the seed.
    progress: called as progress(steps_done, steps_total, message).
    Returns a ProbeResult with metric "r2", chance 0.0 and details["alpha"] (n_layers, n_folds).
    """
    items = _layer_items(layers)
    raw = np.asarray(targets)
    _check_layers(items, len(raw))
    kept, keep = _drop_missing(raw, dropna, "targets")
    values = _numeric_targets(kept)
    n = len(values)
    n_folds = _check_folds(n_folds, n)
    if n < 2 * n_folds:
        raise LayerscopeError(
            f"there are {n} inputs, fewer than 2 * n_folds={2 * n_folds}: R^2 needs at least two inputs "
            "in each held-out fold; lower n_folds or add inputs"
        )
    alpha_values = _check_alphas(alphas)
    seed = _check_int("seed", seed, 0)
    for name, array in items:
        _check_finite(name, array)

    from sklearn.model_selection import KFold

    folds = list(KFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(n)))
    tasks = [values]
    if control:
        tasks.append(np.random.default_rng(seed).permutation(values))
    device = pick_device(device)
    Y = torch.as_tensor(np.stack(tasks, axis=1), dtype=torch.float64, device=device)  # (n, T)
    alphas_t = torch.as_tensor(alpha_values, dtype=torch.float64, device=device)
    L, T = len(items), len(tasks)
    scores = np.full((L, n_folds, 2), np.nan)
    chosen = np.full((L, n_folds, 2), np.nan)
    A = len(alpha_values)
    batches = _width_batches(items, lambda d: 8.0 * (4 * n * d + 3 * min(d, n) ** 2 + 3 * A * n * T))
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
            chosen[batch, f, :T] = alpha_values[best.cpu().numpy()]
            done += 1
            if progress is not None:
                names = ", ".join(items[i][0] for i in batch)
                progress(done, total, f"ridge probes on {names}: fold {f + 1}/{n_folds}")
    logger.info("ridge-probed %d layers x %d folds in %.2f s", L, n_folds, time.perf_counter() - started)
    params = {
        "task": "regression",
        "alphas": [float(a) for a in alpha_values],
        "n_folds": n_folds,
        "seed": int(seed),
        "control": bool(control),
        "dropna": bool(dropna),
        "folds": "KFold(shuffle=True, random_state=seed)",
        "control_labels": "numpy.random.default_rng(seed).permutation(targets)",
        "solver": "ridge, alpha by exact leave-one-out on the training split (float64)",
        "version": PROBE_VERSION,
    }
    return _make_result(
        [name for name, _ in items],
        scores[..., 0],
        scores[..., 1],  # NaN without control
        chance=0.0,
        metric="r2",
        n=n,
        n_dropped=int((~keep).sum()),
        params=params,
        details={"alpha": chosen[..., 0], "control_alpha": chosen[..., 1]},
    )


# ----- task choice and the cached entry point --------------------------------------------------------
def infer_task(values: Any) -> str:
    """"classification" or "regression" for a label column (what task="auto" picks).

    Strings, booleans and categories are classes; numbers with more than
    AUTO_MAX_CLASSES distinct values are a regression target, fewer are classes.
    """
    import pandas as pd

    series = pd.Series(values)
    present = series.dropna()
    if series.dtype == object:  # numbers stored as objects (e.g. with None) count as numbers
        numeric = pd.to_numeric(present, errors="coerce")
        if len(present) and numeric.notna().all() and not present.map(lambda v: isinstance(v, bool)).any():
            present = numeric
        else:
            return "classification"
    elif pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return "classification"
    return "regression" if present.nunique() > AUTO_MAX_CLASSES else "classification"


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
    control: bool = True,
    seed: int = 0,
    dropna: bool = False,
    drop_rare: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> ProbeResult:
    """Probe every layer of `acts` for label `column`, through the store.

    task: "auto" (from the column: see infer_task), "classification" (logistic,
    accuracy) or "regression" (ridge, R^2). layers: a subset of acts.layer_names
    (default all). The result is cached under kind "probes", keyed by the run,
    the column and every parameter that changes it; a second call reads it back.
    """
    if task not in TASKS:
        raise LayerscopeError(f"task={task!r} is not supported; choose one of {', '.join(TASKS)}")
    labels = acts.labels(column)
    resolved = infer_task(labels) if task == "auto" else task
    if layers is None:
        layer_names = list(acts.layer_names)
    else:
        layer_names = [layers] if isinstance(layers, str) else list(layers)
        unknown = [name for name in layer_names if name not in acts.layer_names]
        if unknown or not layer_names:
            raise LayerscopeError(
                f"layers={layers!r}: {', '.join(map(repr, unknown)) or 'none given'} not in run {acts.key}; "
                f"it has {', '.join(acts.layer_names)}"
            )
    n_folds = _check_folds(n_folds, len(labels))
    params: dict[str, Any] = {
        "run": acts.key,
        "column": column,
        "task": resolved,
        "layers": layer_names,
        "n_folds": n_folds,
        "seed": int(seed),
        "control": bool(control),
        "dropna": bool(dropna),
        "version": PROBE_VERSION,
    }
    if resolved == "classification":
        params.update(
            C=_check_positive("C", C),
            max_iter=_check_int("max_iter", max_iter, 1),
            tol=_check_positive("tol", tol),
            drop_rare=bool(drop_rare),
        )
    else:
        params["alphas"] = [float(a) for a in _check_alphas(alphas)]

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        subset = {name: acts.pooled(name) for name in layer_names}  # tokens runs: mean of each input's tokens
        common = dict(n_folds=n_folds, control=control, seed=seed, dropna=dropna, device=device, progress=progress)
        if resolved == "classification":
            result = probe_accuracy_by_layer(
                subset, labels, C=C, max_iter=max_iter, tol=tol, drop_rare=drop_rare, **common
            )
        else:
            result = probe_r2_by_layer(subset, labels, alphas=params["alphas"], **common)
        return _to_store(result)

    arrays, meta = store.cached_result("probes", params, compute)
    return _from_store(arrays, meta)


def _to_store(result: ProbeResult) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {"scores": result.scores, "control_scores": result.control_scores}
    arrays.update({f"details__{key}": value for key, value in result.details.items()})
    meta = {
        "layer_names": list(result.layer_names),
        "chance": result.chance,
        "metric": result.metric,
        "n": result.n,
        "n_dropped": result.n_dropped,
        "result_params": result.params,
    }
    return arrays, meta


def _from_store(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> ProbeResult:
    details = {key.removeprefix("details__"): np.array(v) for key, v in arrays.items() if key.startswith("details__")}
    return _make_result(
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
