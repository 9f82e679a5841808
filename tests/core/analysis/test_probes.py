"""Linear probes per layer: agreement with scikit-learn on the same folds, controls, errors, the store."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.activations import Activations
from core.analysis import probes
from core.analysis.probes import (
    ProbeResult,
    infer_task,
    probe_accuracy_by_layer,
    probe_by_layer_cached,
    probe_r2_by_layer,
)
from core.errors import LayerscopeError
from core.store import Store


# ----- references ----------------------------------------------------------------------
def sklearn_accuracy(X: np.ndarray, y: np.ndarray, *, C: float = 1.0, n_folds: int = 5, seed: int = 0) -> np.ndarray:
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


def sklearn_r2(X: np.ndarray, y: np.ndarray, alphas, *, n_folds: int = 5, seed: int = 0):
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


# ----- agreement with scikit-learn --------------------------------------------------------
def test_probe_accuracy__matches_sklearn_on_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.data, digits.target  # 64 pixels, several constant on some folds
    layers = {"pixels": X, "pixels_scaled": X * 7.0 - 3.0}  # standardisation makes these identical
    result = probe_accuracy_by_layer(layers, y, control=False)
    reference = sklearn_accuracy(X, y)
    assert np.abs(result.mean - reference.mean()).max() * 100 <= 1.0
    assert np.abs(result.scores - reference).max() * 100 <= 1.5  # one fold: 360 test digits
    np.testing.assert_allclose(result.scores[0], result.scores[1], atol=1 / 360)
    assert result.details["converged"].all()


@pytest.mark.parametrize("n_classes, C", [(4, 1.0), (2, 0.05)])
def test_probe_accuracy__matches_sklearn_on_make_classification(n_classes, C):
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=600, n_features=40, n_informative=8, n_classes=n_classes, random_state=n_classes
    )
    X = X * np.linspace(0.1, 50, 40) + 1000.0  # unequal scales and a large offset
    result = probe_accuracy_by_layer({"x": X}, y, C=C, control=False)
    reference = sklearn_accuracy(X, y, C=C)
    assert abs(result.mean[0] - reference.mean()) * 100 <= 1.0
    assert result.mean[0] > result.chance + 0.15  # a problem with signal, not a trivial one


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_objective__decision_values_match_sklearn(n_classes):
    """The optimum itself (not only the accuracy): sklearn's penalty and binary/multinomial convention."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=300, n_features=12, n_informative=6, n_classes=n_classes, random_state=1)
    C = 0.3
    Xs = StandardScaler().fit_transform(X)
    model = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(Xs, y)
    expected = model.decision_function(Xs)
    block, scale = probes._standardise_globally(X)
    everything = torch.ones(1, 300, dtype=torch.bool)  # one "fold" training on all rows
    codes = torch.as_tensor(y[:, None])
    loss_and_grad, logits_of = probes._logistic_objective(
        torch.as_tensor(block[None]), everything, codes, n_classes, C, torch.as_tensor(scale[None])
    )
    x0 = torch.zeros(1, n_classes * 13, dtype=torch.float64)
    params, _, converged = probes._batched_lbfgs(loss_and_grad, x0, max_iter=5000, tol=1e-9)
    logits = logits_of(params)[0, 0, 0].T.numpy()  # (n, K)
    if n_classes == 2:
        got = logits[:, 1] - logits[:, 0]
    else:  # multinomial intercepts are defined up to a shared shift
        got, expected = logits - logits.mean(1, keepdims=True), expected - expected.mean(1, keepdims=True)
    assert converged.all()
    np.testing.assert_allclose(got, expected, atol=2e-4 * np.abs(expected).max())


def test_logistic_objective__gradient_matches_autograd():
    rng = np.random.default_rng(0)
    L, n, d, F, T, K = 2, 40, 5, 3, 2, 3
    X = torch.as_tensor(rng.normal(size=(L, n, d)))
    train = torch.as_tensor(rng.random((F, n)) < 0.7)
    codes = torch.as_tensor(rng.integers(0, K, size=(n, T)))
    loss_and_grad, _ = probes._logistic_objective(X, train, codes, K, 0.7, torch.ones(L, d, dtype=torch.float64))
    params = torch.as_tensor(rng.normal(size=(L * F * T, K * (d + 1)))).requires_grad_(True)
    loss, grad = loss_and_grad(params)
    (expected,) = torch.autograd.grad(loss.sum(), params)
    torch.testing.assert_close(grad, expected)


def test_probe_r2__matches_sklearn_ridgecv_tall_and_wide():
    from sklearn.datasets import make_regression

    alphas = np.logspace(-3, 3, 13)
    tall_X, tall_y = make_regression(n_samples=300, n_features=30, n_informative=8, noise=30.0, random_state=0)
    wide_X, wide_y = make_regression(n_samples=80, n_features=150, n_informative=10, noise=5.0, random_state=1)
    results = {}
    for name, X, y in (("tall", tall_X, tall_y), ("wide", wide_X, wide_y)):
        result = probe_r2_by_layer({"x": X + 50.0}, y, alphas=alphas)
        reference, chosen = sklearn_r2(X + 50.0, y, alphas)
        np.testing.assert_allclose(result.scores[0], reference, atol=0.01)
        np.testing.assert_array_equal(result.details["alpha"][0], chosen)
        assert result.metric == "r2" and result.chance == 0.0
        results[name] = result
    assert results["tall"].mean[0] > 0.5 and results["tall"].control_mean[0] < 0.1


# ----- chance, control, selectivity -------------------------------------------------------
def test_probe_accuracy__separable_problem_beats_its_control():
    X, y = _blobs()
    noise = np.random.default_rng(1).normal(size=X.shape)
    result = probe_accuracy_by_layer({"noise": noise, "signal": X}, y, seed=3)
    assert result.chance == pytest.approx(1 / 3)
    assert result.mean[1] > 0.95 and result.best_layer == "signal"
    assert abs(result.control_mean[1] - 1 / 3) < 0.12  # shuffled labels: about chance
    np.testing.assert_allclose(result.selectivity, result.mean - result.control_mean)
    assert result.selectivity[1] > 0.5 and result.selectivity[0] < 0.2
    assert result.params["seed"] == 3 and result.params["C"] == 1.0


def test_probe_accuracy__chance_is_majority_share_and_frame_has_every_layer():
    X, y = _blobs(n_per_class=20)
    labels = np.array(["a"] * 40 + ["b"] * 15 + ["c"] * 5)  # 40 / 60 majority
    result = probe_accuracy_by_layer({"l0": X, "l1": X[:, :4]}, labels, n_folds=5, control=False)
    assert result.chance == pytest.approx(40 / 60)
    assert np.isnan(result.control_mean).all() and result.scores.shape == (2, 5)
    frame = result.to_frame()
    assert list(frame["layer"]) == ["l0", "l1"]
    assert {"mean", "std", "control_mean", "selectivity", "chance", "metric"} <= set(frame.columns)
    np.testing.assert_allclose(frame["mean"], result.scores.mean(1))
    np.testing.assert_allclose(frame["std"], result.scores.std(1))


def test_probe_accuracy__batches_and_widths_do_not_change_results(monkeypatch):
    X, y = _blobs(spread=1.0)
    rng = np.random.default_rng(2)
    layers = {"a": X, "b": X + rng.normal(size=X.shape), "wide": np.hstack([X, rng.normal(size=(len(X), 5))])}
    together = probe_accuracy_by_layer(layers, y)
    monkeypatch.setattr(probes, "_MEMORY_BYTES", 1)  # one layer per batch
    alone = probe_accuracy_by_layer(layers, y)
    np.testing.assert_allclose(together.scores, alone.scores)
    np.testing.assert_allclose(together.control_scores, alone.control_scores)


def test_probe_accuracy__reports_progress_to_the_end():
    X, y = _blobs()
    calls = []
    probe_accuracy_by_layer({"x": X}, y, progress=lambda done, total, msg: calls.append((done, total, msg)))
    assert calls and calls[-1][0] == calls[-1][1] == 10  # 1 layer x 5 folds x (task + control)
    assert all(done <= total for done, total, _ in calls)


# ----- bad input --------------------------------------------------------------------------
def test_probe_accuracy__one_class_is_refused():
    with pytest.raises(LayerscopeError, match="one class \\('cat'\\)"):
        probe_accuracy_by_layer({"x": np.ones((20, 3))}, ["cat"] * 20)


def test_probe_accuracy__too_many_classes_is_refused():
    X = np.random.default_rng(0).normal(size=(100, 4))
    with pytest.raises(LayerscopeError, match="labels have 60 distinct values, more than the 50 allowed"):
        probe_accuracy_by_layer({"x": X}, np.arange(100) % 60)


def test_probe_accuracy__missing_labels_need_dropna():
    X, y = _blobs()
    labels = y.astype(object)
    labels[[0, 5, 70]] = None
    labels[100] = np.nan
    with pytest.raises(LayerscopeError, match="4 missing values .* dropna=True"):
        probe_accuracy_by_layer({"x": X}, labels)
    result = probe_accuracy_by_layer({"x": X}, labels, dropna=True)
    assert result.n_dropped == 4 and result.n == len(y) - 4
    with pytest.raises(LayerscopeError, match="there are 3 inputs, fewer than n_folds=5"):
        probe_accuracy_by_layer({"x": X[:7]}, np.array([None, None, None, None, "a", "b", "a"]), dropna=True)


def test_probe_accuracy__too_few_inputs_or_members_per_class():
    X, y = _blobs()
    with pytest.raises(LayerscopeError, match="there are 4 inputs, fewer than n_folds=5"):
        probe_accuracy_by_layer({"x": X[:4]}, y[:4])
    labels = np.array(["big"] * 170 + ["rare"] * 3 + ["other"] * 7)
    with pytest.raises(LayerscopeError, match="1 class has fewer members than n_folds=5: 'rare' \\(3\\).*drop_rare"):
        probe_accuracy_by_layer({"x": X}, labels)
    result = probe_accuracy_by_layer({"x": X}, labels, drop_rare=True, control=False)
    assert result.n == 177 and result.n_dropped == 3 and result.params["dropped_classes"] == ["rare"]


def test_probe__non_finite_activations_name_the_layer():
    X, y = _blobs()
    bad = X.copy()
    bad[3, 2] = np.nan
    bad[9, 0] = np.inf
    with pytest.raises(LayerscopeError, match="layer 'block3' has NaN/inf values in 2 of 180 rows"):
        probe_accuracy_by_layer({"ok": X, "block3": bad}, y)
    with pytest.raises(LayerscopeError, match="layer 'block3'"):
        probe_r2_by_layer({"block3": bad}, X[:, 0])


def test_probe__mismatched_lengths_name_the_layer():
    X, y = _blobs()
    with pytest.raises(LayerscopeError, match="layer 'short' has 100 rows but there are 180 labels"):
        probe_accuracy_by_layer({"x": X, "short": X[:100]}, y)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"C": 0}, "C=0 must be a positive finite number"),
        ({"C": float("inf")}, "C=inf must be"),
        ({"n_folds": 1}, "n_folds=1 must be an integer >= 2"),
        ({"max_iter": 0}, "max_iter=0 must be an integer >= 1"),
        ({"seed": -1}, "seed=-1 must be an integer >= 0"),
    ],
)
def test_probe_accuracy__bad_parameters(kwargs, message):
    X, y = _blobs()
    with pytest.raises(LayerscopeError, match=message):
        probe_accuracy_by_layer({"x": X}, y, **kwargs)


def test_probe_r2__bad_targets_and_alphas():
    X, _ = _blobs()
    with pytest.raises(LayerscopeError, match="targets must be numbers, got values such as 'Paris'"):
        probe_r2_by_layer({"x": X}, np.array(["Paris"] * 180, dtype=object))
    with pytest.raises(LayerscopeError, match="targets are constant \\(2.5\\)"):
        probe_r2_by_layer({"x": X}, np.full(180, 2.5))
    with pytest.raises(LayerscopeError, match="alphas=\\[0.0, 1.0\\] must be"):
        probe_r2_by_layer({"x": X}, X[:, 0], alphas=[0.0, 1.0])
    with pytest.raises(LayerscopeError, match="fewer than 2 \\* n_folds=10"):
        probe_r2_by_layer({"x": X[:8]}, X[:8, 0])
    targets = X[:, 0].copy()
    targets[:3] = np.nan
    with pytest.raises(LayerscopeError, match="3 missing values"):
        probe_r2_by_layer({"x": X}, targets)
    assert probe_r2_by_layer({"x": X}, targets, dropna=True, control=False).n_dropped == 3


def test_probe__tokens_run_is_refused(tmp_path):
    table = pd.DataFrame({"topic": ["a", "b"] * 10})
    acts = _write_run(tmp_path / "run", {"l0": np.zeros((20, 3))}, table, pooling="tokens")
    with pytest.raises(LayerscopeError, match="pooling='tokens'"):
        probe_accuracy_by_layer(acts, table["topic"])


# ----- task choice and the store ------------------------------------------------------------
def test_infer_task__strings_and_few_ints_are_classes_many_numbers_are_targets():
    assert infer_task(["Asia", "Europe", None]) == "classification"
    assert infer_task(np.arange(100) % 6) == "classification"
    assert infer_task([True, False] * 20) == "classification"
    assert infer_task(np.linspace(-60, 70, 100)) == "regression"
    assert infer_task(np.array([1.5, None] * 30 + list(range(40)), dtype=object)) == "regression"


def test_probe_by_layer_cached__second_call_reads_the_store(tmp_path, monkeypatch):
    X, y = _blobs()
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"topic": np.array(["x", "y", "z"])[y], "latitude": X[:, 0] * 3 + rng.normal(size=len(y))})
    acts = _write_run(tmp_path / "run", {"l0": rng.normal(size=X.shape), "l1": X}, table)
    store = Store(tmp_path / "workspace")
    calls = []
    real = probes.probe_accuracy_by_layer

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(probes, "probe_accuracy_by_layer", counting)
    first = probe_by_layer_cached(acts, "topic", store)
    again = probe_by_layer_cached(acts, "topic", store)
    assert len(calls) == 1 and isinstance(again, ProbeResult)
    np.testing.assert_array_equal(first.scores, again.scores)
    np.testing.assert_array_equal(first.control_scores, again.control_scores)
    assert again.layer_names == ("l0", "l1") and again.best_layer == "l1" and again.metric == "accuracy"
    assert again.params["classes"] == ["x", "y", "z"] and again.details["n_iter"].shape == (2, 5)
    probe_by_layer_cached(acts, "topic", store, C=0.1)  # another parameter: another entry
    assert len(calls) == 2

    regression = probe_by_layer_cached(acts, "latitude", store)  # float column: ridge, R^2
    assert regression.metric == "r2" and regression.best_layer == "l1" and regression.mean[1] > 0.9
    forced = probe_by_layer_cached(acts, "latitude", store, task="regression", layers=["l1"])
    np.testing.assert_array_equal(forced.scores[0], regression.scores[1])
    assert len(list((store.root / "results" / "probes").iterdir())) == 4
    with pytest.raises(LayerscopeError, match="task='ordinal' is not supported"):
        probe_by_layer_cached(acts, "topic", store, task="ordinal")
    with pytest.raises(LayerscopeError, match="label column 'colour' is not in run"):
        probe_by_layer_cached(acts, "colour", store)


def test_probe_r2__warns_nothing_and_accepts_activations(tmp_path):
    X, _ = _blobs()
    target = X @ np.linspace(-1, 1, X.shape[1])
    acts = _write_run(tmp_path / "run", {"l0": X}, pd.DataFrame({"t": target}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = probe_r2_by_layer(acts, target, control=False)
    assert result.mean[0] > 0.99


# ----- the real thing ---------------------------------------------------------------------
@pytest.mark.slow
def test_probe_by_layer_cached__minilm_knows_the_topic_of_demo_sentences(minilm, sentences, store):
    import core

    acts = core.extract(minilm, sentences, layers="all", pooling="mean", store=store)
    result = probe_by_layer_cached(acts, "topic", store)
    assert result.layer_names == tuple(acts.layer_names) and result.chance == pytest.approx(1 / 6)
    assert result.mean[-1] > 0.9 and result.selectivity[-1] > 0.6  # a sentence encoder knows topics
    assert np.all(np.abs(result.control_mean - 1 / 6) < 0.1)
    for i, layer in enumerate(acts.layer_names):  # every layer within 1 point of sklearn
        reference = sklearn_accuracy(np.asarray(acts[layer]), acts.labels("topic"))
        assert abs(result.mean[i] - reference.mean()) * 100 <= 1.0, layer


@pytest.mark.slow
def test_probe_by_layer_cached__minilm_continent_of_cities_matches_sklearn(minilm, store):
    import core

    acts = core.extract(minilm, core.load_dataset("demo:cities"), layers="all", pooling="mean", store=store)
    result = probe_by_layer_cached(acts, "continent", store, control=False)
    assert result.mean.max() > result.chance + 0.05  # city names carry some of where they are
    for i, layer in enumerate(acts.layer_names):
        reference = sklearn_accuracy(np.asarray(acts[layer]), acts.labels("continent"))
        assert abs(result.mean[i] - reference.mean()) * 100 <= 1.0, layer
