"""Shared fixtures of the probe tests: scikit-learn references, toy problems and run folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.activations import Activations


def _sklearn_accuracy(X: np.ndarray, y: np.ndarray, *, C: float = 1.0, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """(n_folds,) held-out accuracy of StandardScaler + LogisticRegression on the same folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    scores = []
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y):
        scaler = StandardScaler().fit(X[train])
        model = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(X[train]), y[train])
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


def _write_run(folder: Path, layers: dict[str, np.ndarray], table: pd.DataFrame, pooling: str = "mean") -> Activations:
    """A minimal complete run folder (layers + label table) read back as Activations."""
    (folder / "layers").mkdir(parents=True)
    files = {}
    for i, (name, array) in enumerate(layers.items()):
        files[name] = f"layers/{i:03d}.npy"
        np.save(folder / files[name], array)
    table.to_parquet(folder / "table.parquet")
    meta = {
        "layers": list(layers),
        "layer_files": files,
        "pooling": pooling,
        "n_inputs": len(table),
        "dims": {name: int(a.shape[1]) for name, a in layers.items()},
        "model": {"name": "toy", "modality": "text"},
        "dataset": {"name": "toy", "label_columns": list(table.columns)},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return Activations(folder, meta)


@pytest.fixture()
def sklearn_accuracy() -> Callable[..., np.ndarray]:
    return _sklearn_accuracy


@pytest.fixture()
def sklearn_r2() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return _sklearn_r2


@pytest.fixture()
def blobs() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return _blobs


@pytest.fixture()
def write_run() -> Callable[..., Activations]:
    return _write_run
