"""Classification probes: agreement with scikit-learn on the same folds, the control task, batching, progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.probes import inputs, probe_accuracy_by_layer
from core.analysis.probes.lbfgs import batched_lbfgs
from core.analysis.probes.logistic import logistic_objective, standardise_globally
from core.errors import LayerscopeError


# ----- agreement with scikit-learn --------------------------------------------------------
def test_probe_accuracy__matches_sklearn_on_digits(sklearn_accuracy):
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
def test_probe_accuracy__matches_sklearn_on_make_classification(n_classes, C, sklearn_accuracy):
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=600, n_features=40, n_informative=8, n_classes=n_classes, random_state=n_classes
    )
    X = X * np.linspace(0.1, 50, 40) + 1000.0  # unequal scales and a large offset
    result = probe_accuracy_by_layer({"x": X}, y, C=C, control=False)
    reference = sklearn_accuracy(X, y, C=C)
    assert abs(result.mean[0] - reference.mean()) * 100 <= 1.0
    assert result.mean[0] > result.chance + 0.15  # a problem with signal, not a trivial one


def _weak_signal(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) offset Gaussian features with a weak class signal in 3 of them, and k balanced-ish classes."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + 0.3 * rng.normal(size=(1, d))
    y = rng.integers(0, k, size=n)
    X[:, :3] += 0.5 * y[:, None]
    return X, y


@pytest.mark.parametrize(
    "n, d, k, seed", [(120, 200, 3, 0), (120, 200, 3, 7), (120, 200, 4, 7), (120, 200, 2, 2), (1000, 50, 3, 0)]
)
def test_probe_accuracy__labels_and_shuffled_control_match_converged_sklearn(n, d, k, seed, sklearn_accuracy):
    """Shuffled labels with d > n are nearly separable: a loose stop leaves held-out predictions unsettled."""
    X, y = _weak_signal(n, d, k, seed)
    result = probe_accuracy_by_layer({"x": X}, y, seed=seed, control="shuffled")
    shuffled = np.random.default_rng(seed).permutation(y)  # the probe's control labels
    main = sklearn_accuracy(X, y, seed=seed, tol=1e-10)
    control = sklearn_accuracy(X, shuffled, seed=seed, strata=y, tol=1e-10)  # on the probe's folds
    assert abs(result.mean[0] - main.mean()) * 100 <= 1.0
    assert abs(result.control_mean[0] - control.mean()) * 100 <= 1.0
    assert result.details["converged"].all() and result.details["control_converged"].all()


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
    block, scale = standardise_globally(X)
    everything = torch.ones(1, 300, dtype=torch.bool)  # one "fold" training on all rows
    codes = torch.as_tensor(y[:, None])
    loss_and_grad, logits_of = logistic_objective(
        torch.as_tensor(block[None]), everything, codes, n_classes, C, torch.as_tensor(scale[None])
    )
    x0 = torch.zeros(1, n_classes * 13, dtype=torch.float64)
    params, _, converged = batched_lbfgs(loss_and_grad, x0, max_iter=5000, tol=1e-9)
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
    loss_and_grad, _ = logistic_objective(X, train, codes, K, 0.7, torch.ones(L, d, dtype=torch.float64))
    params = torch.as_tensor(rng.normal(size=(L * F * T, K * (d + 1)))).requires_grad_(True)
    loss, grad = loss_and_grad(params)
    (expected,) = torch.autograd.grad(loss.sum(), params)
    torch.testing.assert_close(grad, expected)


# ----- chance, control, selectivity -------------------------------------------------------
def test_probe_accuracy__separable_problem_beats_its_control(blobs):
    X, y = blobs()
    noise = np.random.default_rng(1).normal(size=X.shape)
    result = probe_accuracy_by_layer({"noise": noise, "signal": X}, y, seed=3)
    assert result.chance == pytest.approx(1 / 3)
    assert result.mean[1] > 0.95 and result.best_layer == "signal"
    assert abs(result.control_mean[1] - 1 / 3) < 0.12  # shuffled labels: about chance
    np.testing.assert_allclose(result.selectivity, result.mean - result.control_mean)
    assert result.selectivity[1] > 0.5 and result.selectivity[0] < 0.2
    assert result.params["seed"] == 3 and result.params["C"] == 1.0


def test_probe_accuracy__chance_is_majority_share_and_frame_has_every_layer(blobs):
    X, y = blobs(n_per_class=20)
    labels = np.array(["a"] * 40 + ["b"] * 15 + ["c"] * 5)  # 40 / 60 majority
    result = probe_accuracy_by_layer({"l0": X, "l1": X[:, :4]}, labels, n_folds=5, control=False)
    assert result.chance == pytest.approx(40 / 60)
    assert np.isnan(result.control_mean).all() and result.scores.shape == (2, 5)
    frame = result.to_frame()
    assert list(frame["layer"]) == ["l0", "l1"]
    assert {"mean", "std", "control_mean", "selectivity", "chance", "metric"} <= set(frame.columns)
    np.testing.assert_allclose(frame["mean"], result.scores.mean(1))
    np.testing.assert_allclose(frame["std"], result.scores.std(1))


def test_probe_accuracy__batches_and_widths_do_not_change_results(monkeypatch, blobs):
    X, y = blobs(spread=1.0)
    rng = np.random.default_rng(2)
    layers = {"a": X, "b": X + rng.normal(size=X.shape), "wide": np.hstack([X, rng.normal(size=(len(X), 5))])}
    together = probe_accuracy_by_layer(layers, y)
    monkeypatch.setattr(inputs, "MEMORY_BYTES", 1)  # one layer per batch
    alone = probe_accuracy_by_layer(layers, y)
    np.testing.assert_allclose(together.scores, alone.scores)
    np.testing.assert_allclose(together.control_scores, alone.control_scores)


def test_probe_accuracy__reports_progress_to_the_end(blobs):
    X, y = blobs()
    calls = []
    probe_accuracy_by_layer({"x": X}, y, progress=lambda done, total, msg: calls.append((done, total, msg)))
    assert calls and calls[-1][0] == calls[-1][1] == 10  # 1 layer x 5 folds x (task + control)
    assert all(done <= total for done, total, _ in calls)


# ----- bad input --------------------------------------------------------------------------
def test_probe__non_finite_activations_name_the_layer(blobs):
    from core.analysis.probes import probe_r2_by_layer

    X, y = blobs()
    bad = X.copy()
    bad[3, 2] = np.nan
    bad[9, 0] = np.inf
    with pytest.raises(LayerscopeError, match="layer 'block3' has NaN/inf values in 2 of 180 rows"):
        probe_accuracy_by_layer({"ok": X, "block3": bad}, y)
    with pytest.raises(LayerscopeError, match="layer 'block3'"):
        probe_r2_by_layer({"block3": bad}, X[:, 0])


def test_probe__mismatched_lengths_name_the_layer(blobs):
    X, y = blobs()
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
def test_probe_accuracy__bad_parameters(kwargs, message, blobs):
    X, y = blobs()
    with pytest.raises(LayerscopeError, match=message):
        probe_accuracy_by_layer({"x": X}, y, **kwargs)


def test_probe__tokens_run_is_refused(tmp_path, write_run):
    import pandas as pd

    table = pd.DataFrame({"topic": ["a", "b"] * 10})
    acts = write_run(tmp_path / "run", {"l0": np.zeros((20, 3))}, table, pooling="tokens")
    with pytest.raises(LayerscopeError, match="pooling='tokens'"):
        probe_accuracy_by_layer(acts, table["topic"])
