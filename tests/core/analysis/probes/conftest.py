"""Shared fixtures of the probe tests: scikit-learn references and toy problems."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _sklearn_accuracy(
    X: np.ndarray,
    y: np.ndarray,
    *,
    C: float = 1.0,
    n_folds: int = 5,
    seed: int = 0,
    strata: np.ndarray | None = None,
    tol: float = 1e-4,
) -> np.ndarray:
    """(n_folds,) held-out accuracy of StandardScaler + LogisticRegression on the same folds.

    strata: the labels the folds are stratified on (default y; a control uses the real
    labels' folds). tol: sklearn's; its default 1e-4 stops up to ~1.7 points of held-out
    accuracy short of its own optimum on nearly separable problems, 1e-10 reaches it.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    scores = []
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y if strata is None else strata)
    for train, test in folds:
        scaler = StandardScaler().fit(X[train])
        model = LogisticRegression(C=C, tol=tol, max_iter=1000 if tol >= 1e-4 else 10_000)
        model.fit(scaler.transform(X[train]), y[train])
        scores.append((model.predict(scaler.transform(X[test])) == y[test]).mean())
    return np.array(scores)


def _sklearn_r2(X: np.ndarray, y: np.ndarray, alphas, *, n_folds: int = 5, seed: int = 0):
    """(n_folds,) held-out R^2 and chosen alphas of StandardScaler + RidgeCV on the same folds."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores, chosen = [], []
    for train, test in KFold(n_folds, shuffle=True, random_state=seed).split(X):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)).fit(X[train], y[train])
        scores.append(r2_score(y[test], model.predict(X[test])))
        chosen.append(model[-1].alpha_)
    return np.array(scores), np.array(chosen)


def _blobs(n_per_class: int = 60, d: int = 10, k: int = 3, spread: float = 8.0, seed: int = 0):
    """(k * n_per_class, d) points around k random centres and their class index."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(k, d))
    labels = np.repeat(np.arange(k), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), d)), labels


@pytest.fixture()
def sklearn_accuracy() -> Callable[..., np.ndarray]:
    return _sklearn_accuracy


@pytest.fixture()
def sklearn_r2() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return _sklearn_r2


@pytest.fixture()
def blobs() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return _blobs
