"""A probe that reads one class's probability from a layer's activations, fitted on a stored run.

Steering asks what a concept probe reads from the steered residual stream. `fit_readout`
fits one binary logistic probe per layer (`positive` against every other class of
`label`) on a run's per-input vectors, with the Probes page's standardisation
(scikit-learn `StandardScaler` then `LogisticRegression(C=C)`), on every input of the
run: the readout is applied to new activations, so there is nothing to hold out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import LayerscopeError
from core.runs import check_layers
from core.validation import check_number

if TYPE_CHECKING:
    from core.activations import Activations

READOUT_POOLINGS = ("mean", "first", "last", "max")  # how a run's token vectors became one vector per input


@dataclass(frozen=True, eq=False)
class ReadoutProbe:
    """Per-layer logistic probes for P(label == positive), with the standardisation they were fitted on."""

    label: str  # label column of the run's dataset
    positive: str  # the class whose probability is read
    layers: tuple[str, ...]  # (R,) layers in the run's order
    run_key: str  # the run the probes were fitted on
    pooling: str  # how the run pooled tokens ("tokens" runs are read as their mean)
    C: float  # inverse L2 strength, as LogisticRegression(C=C)
    mean_: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (d,) feature means
    scale_: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (d,) feature std (1 where constant)
    coef_: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (d,) weights on standardised features
    intercept_: dict[str, float] = field(default_factory=dict)  # layer -> intercept
    train_accuracy_: dict[str, float] = field(default_factory=dict)  # layer -> accuracy on the run itself

    @property
    def spec(self) -> dict[str, Any]:
        """What identifies the probe in store keys."""
        return {"run": self.run_key, "label": self.label, "positive": self.positive,
                "layers": list(self.layers), "C": self.C, "pooling": self.pooling}

    @property
    def read_pooling(self) -> str:
        """How a sequence of token vectors is pooled before the probe reads it: as the run was."""
        return self.pooling if self.pooling in READOUT_POOLINGS else "mean"

    def probability(self, layer: str, X: np.ndarray) -> np.ndarray:
        """(n,) P(positive) of each row of X (n, d) at `layer`."""
        if layer not in self.coef_:
            raise LayerscopeError(f"the readout probe has no layer {layer!r}; it has {', '.join(self.layers)}")
        Z = (np.asarray(X, dtype=np.float64) - self.mean_[layer]) / self.scale_[layer]
        from scipy.special import expit  # the logistic function without overflow

        return expit(Z @ self.coef_[layer] + self.intercept_[layer])


def pool_rows(rows: np.ndarray, pooling: str) -> np.ndarray:
    """(d,) one vector from a sequence of token vectors rows (T, d), pooled like extraction does."""
    if pooling == "first":
        return rows[0]
    if pooling == "last":
        return rows[-1]
    if pooling == "max":
        return rows.max(axis=0)
    return rows.mean(axis=0)


def fit_readout(
    acts: Activations,
    label: str,
    positive: str,
    layers: str | Iterable[str] | None = None,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> ReadoutProbe:
    """Fit P(label == positive) probes on `acts` at `layers` (None or "all": every layer of the run).

    acts: a stored run (pooled; a tokens run is read as its per-input mean).
    Returns a ReadoutProbe whose `probability(layer, X)` gives (n,) P(positive).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    C = check_number("C", C, low=0, low_open=True)
    chosen = check_layers(acts, layers)
    values = np.asarray(acts.labels(label)).astype(str)
    classes = sorted(set(values))
    if positive not in classes:
        raise LayerscopeError(f"positive={positive!r} is not a class of {label!r}; it has {', '.join(classes)}")
    if len(classes) < 2:
        raise LayerscopeError(f"label {label!r} has only the class {positive!r}; a probe needs two classes")
    y = values == positive  # (n,) one class against the rest
    probe = ReadoutProbe(label=label, positive=positive, layers=chosen, run_key=acts.key, pooling=acts.pooling, C=C)
    for layer in chosen:
        X = np.asarray(acts.pooled(layer), dtype=np.float64)  # (n, d)
        scaler = StandardScaler().fit(X)
        Z = scaler.transform(X)
        fit = LogisticRegression(C=C, max_iter=max_iter).fit(Z, y)
        probe.mean_[layer] = scaler.mean_
        probe.scale_[layer] = scaler.scale_
        probe.coef_[layer] = fit.coef_[0].astype(np.float64)
        probe.intercept_[layer] = float(fit.intercept_[0])
        probe.train_accuracy_[layer] = float(fit.score(Z, y))
    return probe
