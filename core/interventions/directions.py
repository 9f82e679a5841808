"""Directions at a layer, made from a stored run (or an SAE): class means, a probe, contrast pairs, a decoder row.

Every direction is a unit vector in the layer's raw activation space with
`scale` = the mean L2 norm of the layer's activations over the run (steering measures
alpha in the prompts' median token norm by default, or in this scale with scale="run"). A tokens run
(pooling="tokens") is read one row per token, each token carrying its input's label;
a pooled run one row per input.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import LayerscopeError
from core.interventions.records import SOURCES, Direction
from core.runs import check_layer
from core.validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    from core.activations import Activations
    from core.store import Store


# ----- what every source reads -------------------------------------------------------------
def layer_rows(acts: Activations, layer: str) -> np.ndarray:
    """(rows, d) float64 activations of `layer`: one row per input, or per token for a tokens run."""
    check_layer(acts, layer)
    return np.asarray(acts[layer], dtype=np.float64)


def row_labels(acts: Activations, label: str) -> np.ndarray:
    """(rows,) the label of each row of `layer_rows` (a tokens run repeats each input's label per token)."""
    if label not in acts.label_columns:
        raise LayerscopeError(
            f"label={label!r} is not a label column of run {acts.key}; "
            f"it has {', '.join(acts.label_columns) or 'no label columns'}"
        )
    values = acts.labels(label)
    return np.repeat(values, acts.lengths) if acts.is_tokens else values


def mean_norm(X: np.ndarray) -> float:
    """Mean L2 norm of the rows of X (n, d): a layer's activation scale."""
    return float(np.linalg.norm(X, axis=1).mean())


def class_names(labels: np.ndarray) -> list[str]:
    """The classes of a label column as text, sorted, missing values left out."""
    import pandas as pd

    present = labels[~np.asarray(pd.isna(labels), dtype=bool)]
    return sorted({str(v) for v in present})


def class_mask(labels: np.ndarray, label: str, value: Any, name: str) -> np.ndarray:
    """(rows,) bool: the rows whose label reads as `value`; an unknown or one-row class is refused."""
    classes = class_names(labels)
    if str(value) not in classes:
        raise LayerscopeError(f"{name}={value!r} is not a class of label {label!r}; it has {', '.join(classes)}")
    mask = np.array([str(v) == str(value) for v in labels])
    if mask.sum() < 2:
        raise LayerscopeError(f"{name}={value!r} has {int(mask.sum())} input(s) in label {label!r}; it needs at least 2")
    return mask


def contrast_masks(labels: np.ndarray, label: str, positive: Any, negative: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """(positive rows, negative rows) masks: `negative`'s rows, or every other labelled row."""
    pos = class_mask(labels, label, positive, "positive")
    if negative is not None:
        if str(negative) == str(positive):
            raise LayerscopeError(f"negative={negative!r} is the positive class; pick another class or leave it out")
        return pos, class_mask(labels, label, negative, "negative")
    import pandas as pd

    neg = ~pos & ~np.asarray(pd.isna(labels), dtype=bool)
    if neg.sum() < 2:
        raise LayerscopeError(f"label {label!r} has fewer than 2 inputs outside positive={positive!r}")
    return pos, neg


def unit(vector: np.ndarray, what: str) -> np.ndarray:
    """`vector` / ||vector|| as float32; a non-finite or zero vector is refused."""
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(vector).all() or not np.isfinite(norm):
        raise LayerscopeError(f"the {what} direction is not finite (NaN/inf); the activations overflowed: extract in float32")
    if norm == 0:
        raise LayerscopeError(f"the {what} direction is zero: the classes do not differ at this layer; pick another layer")
    return (vector / norm).astype(np.float32)


def _run_provenance(acts: Activations, layer: str, label: str) -> dict[str, Any]:
    return {"run": acts.key, "dataset": acts.dataset_name, "pooling": acts.pooling, "layer": layer, "label": label}


def _direction(acts: Activations, layer: str, X: np.ndarray, vector: np.ndarray, source: str, name: str,
               provenance: dict[str, Any]) -> Direction:
    return Direction(vector=unit(vector, source), layer=layer, model=dict(acts.meta["model"]), source=source,
                     scale=mean_norm(X), provenance=provenance, name=name)


def _contrast_name(label: str, positive: Any, negative: Any | None, layer: str) -> str:
    return f"{label}: {positive} - {'rest' if negative is None else negative} @ {layer}"


# ----- sources ---------------------------------------------------------------------------------
def mean_difference_direction(acts: Activations, layer: str, label: str, positive: Any,
                              negative: Any | None = None) -> Direction:
    """mean(positive rows) - mean(negative rows, or all other classes), unit-normalised."""
    X, labels = layer_rows(acts, layer), row_labels(acts, label)
    pos, neg = contrast_masks(labels, label, positive, negative)
    vector = X[pos].mean(0) - X[neg].mean(0)
    provenance = {**_run_provenance(acts, layer, label), "positive": str(positive),
                  "negative": None if negative is None else str(negative), "classes": class_names(labels),
                  "n_positive": int(pos.sum()), "n_negative": int(neg.sum())}
    return _direction(acts, layer, X, vector, "mean_difference", _contrast_name(label, positive, negative, layer),
                      provenance)


def probe_direction(acts: Activations, layer: str, label: str, positive: Any = None, C: float = 1.0,
                    seed: int = 0) -> Direction:
    """The weight of a probe fitted on every row, mapped back to raw activation space (w_raw = w / std).

    Features are standardised as the Probes page does (mean/std over the rows). Categorical
    labels: L2 logistic regression (sklearn, C) of `positive` against the rest. Numeric labels
    (core.analysis.probes.infer_task gives "regression"): the ridge weight, alpha chosen by
    leave-one-out among the Probes page's alphas; the direction points to larger values.
    """
    from core.analysis.probes import DEFAULT_ALPHAS, infer_task

    C = check_number("C", C, low=0, low_open=True)
    seed = check_int("seed", seed, low=0)
    X, labels = layer_rows(acts, layer), row_labels(acts, label)
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 0, std, 1.0)
    Z = (X - mean) / std
    provenance = {**_run_provenance(acts, layer, label), "C": C, "seed": seed,
                  "standardised": "mean/std over the rows; w_raw = w / std"}
    if infer_task(acts.labels(label)) == "regression":
        from sklearn.linear_model import RidgeCV

        import pandas as pd

        keep = ~np.asarray(pd.isna(labels), dtype=bool)
        ridge = RidgeCV(alphas=DEFAULT_ALPHAS).fit(Z[keep], labels[keep].astype(np.float64))
        provenance.update(task="regression", alpha=float(ridge.alpha_), positive=None)
        return _direction(acts, layer, X, ridge.coef_ / std, "probe", f"{label}: ridge weight @ {layer}", provenance)
    from sklearn.linear_model import LogisticRegression

    if positive is None:
        raise LayerscopeError(f"positive=None: label {label!r} has classes {', '.join(class_names(labels))}; name one")
    pos, neg = contrast_masks(labels, label, positive, None)
    rows = pos | neg
    probe = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(Z[rows], pos[rows].astype(int))
    provenance.update(task="classification", positive=str(positive), classes=class_names(labels),
                      n_positive=int(pos.sum()), n_negative=int(neg.sum()))
    return _direction(acts, layer, X, probe.coef_[0] / std, "probe", f"{label}: probe {positive} vs rest @ {layer}",
                      provenance)


def contrast_pca_direction(acts: Activations, layer: str, label: str, positive: Any, negative: Any | None = None,
                           seed: int = 0) -> Direction:
    """First principal component of contrast-pair differences (representation engineering, Zou et al. 2023).

    Each positive row is paired with a random (seeded) negative row; as in RepE's PCA reader
    each difference is flipped at random before centring, so the component follows the
    contrast rather than its mean. The sign points from the negative mean to the positive one.
    """
    seed = check_int("seed", seed, low=0)
    X, labels = layer_rows(acts, layer), row_labels(acts, label)
    pos, neg = contrast_masks(labels, label, positive, negative)
    rng = np.random.default_rng(seed)
    P, N = X[pos], X[neg]
    diffs = P - N[rng.integers(0, len(N), size=len(P))]  # (n_pos, d)
    diffs *= rng.choice([-1.0, 1.0], size=(len(P), 1))
    diffs -= diffs.mean(0)
    _, _, vt = np.linalg.svd(diffs, full_matrices=False)
    vector = vt[0]
    if vector @ (P.mean(0) - N.mean(0)) < 0:
        vector = -vector
    provenance = {**_run_provenance(acts, layer, label), "positive": str(positive),
                  "negative": None if negative is None else str(negative), "classes": class_names(labels),
                  "seed": seed, "n_pairs": int(len(P))}
    name = _contrast_name(label, positive, negative, layer).replace(" @", " (contrast PCA) @")
    return _direction(acts, layer, X, vector, "contrast_pca", name, provenance)


def sae_feature_direction(store: Store, sae_key: str, feature: int) -> Direction:
    """The decoder row W_dec[feature] of a stored SAE, at the SAE's layer; scale from the SAE's run."""
    from core.analysis.sae import open_sae

    entry = open_sae(store, sae_key)
    feature = check_int("feature", feature, low=0, high=entry.sae.d_sae - 1)
    vector = entry.sae.W_dec[feature].detach().cpu().numpy().astype(np.float64)
    if not store.has_run(entry.run_key):
        raise LayerscopeError(
            f"SAE {sae_key} was trained on run {entry.run_key}, which is no longer in the workspace; "
            "its scale comes from that run: extract it again"
        )
    acts = store.open_run(entry.run_key)
    X = layer_rows(acts, entry.layer)
    provenance = {"run": acts.key, "dataset": acts.dataset_name, "pooling": acts.pooling, "layer": entry.layer,
                  "sae": sae_key, "feature": feature, "sae_label": entry.label}
    return _direction(acts, entry.layer, X, vector, "sae_feature", f"SAE {sae_key[:8]} feature {feature} @ {entry.layer}",
                      provenance)


def make_direction(
    source: str,
    acts: Activations | None = None,
    layer: str | None = None,
    label: str | None = None,
    positive: Any = None,
    negative: Any = None,
    *,
    C: float = 1.0,
    seed: int = 0,
    store: Store | None = None,
    sae_key: str | None = None,
    feature: int | None = None,
    name: str | None = None,
) -> Direction:
    """A Direction from `source` (one of SOURCES); `name` replaces the generated one."""
    check_choice("source", source, SOURCES)
    if source == "sae_feature":
        if store is None or sae_key is None or feature is None:
            raise LayerscopeError("source='sae_feature' needs store, sae_key and feature")
        direction = sae_feature_direction(store, sae_key, feature)
    else:
        if acts is None or layer is None or label is None:
            raise LayerscopeError(f"source={source!r} needs a run, a layer and a label")
        if source == "mean_difference":
            direction = mean_difference_direction(acts, layer, label, positive, negative)
        elif source == "probe":
            direction = probe_direction(acts, layer, label, positive, C=C, seed=seed)
        else:
            direction = contrast_pca_direction(acts, layer, label, positive, negative, seed=seed)
    if name is not None and str(name).strip():
        direction = dataclasses.replace(direction, name=str(name).strip())
    return direction
