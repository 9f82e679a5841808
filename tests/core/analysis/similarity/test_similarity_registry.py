"""The metric registry: every metric's pair function, parameter checks and errors."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.similarity import (
    DISTANCE_METRICS,
    METRIC_DEFAULTS,
    METRIC_NAMES,
    SIMILARITY_METRICS,
    Metric,
    debiased_cka,
    linear_cka,
    metric_choices,
    metric_label,
    mutual_knn,
    rbf_cka,
    register_metric,
    registry,
    similarity_matrix,
    svcca,
)
from core.errors import LayerscopeError


@pytest.mark.parametrize("metric", list(SIMILARITY_METRICS))
def test_metrics__constant_layer_raises_naming_it(rng, metric):
    fn = SIMILARITY_METRICS[metric][0]
    constant = np.tile(rng.standard_normal(6), (30, 1))
    with pytest.raises(LayerscopeError, match=r"X is constant|X has 30 .*equal"):
        fn(constant, rng.standard_normal((30, 5)))


def test_metrics__mismatched_rows_and_bad_values_raise_naming_them(rng):
    X = rng.standard_normal((20, 4))
    with pytest.raises(LayerscopeError, match="X has 20 rows but Y has 19"):
        linear_cka(X, X[:19])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(LayerscopeError, match="1 non-finite"):
        linear_cka(bad, X)
    with pytest.raises(LayerscopeError, match="k=0"):
        mutual_knn(X, X, k=0)
    with pytest.raises(LayerscopeError, match="clip_quantile=1.5"):
        mutual_knn(X, X, clip_quantile=1.5)
    with pytest.raises(LayerscopeError, match="bandwidth=-1"):
        rbf_cka(X, X, bandwidth=-1)
    with pytest.raises(LayerscopeError, match="variance=0"):
        svcca(X, X, variance=0)
    with pytest.raises(LayerscopeError, match="at least 4 inputs; got n=3"):
        debiased_cka(X[:3], X[:3])


def test_metrics__registry_returns_python_floats_and_rejects_unknown_names(rng, related):
    X = rng.standard_normal((30, 5))
    Y = related(X, 4, 1.0, rng)
    for name, (fn, description) in SIMILARITY_METRICS.items():
        assert type(fn(X, Y)) is float and description
    with pytest.raises(LayerscopeError, match="'cca'.*linear_cka.*rsa"):
        similarity_matrix({"a": X}, {"a": Y}, "cca")
    with pytest.raises(LayerscopeError, match="'topk'.*k, clip_quantile"):
        similarity_matrix({"a": X}, {"a": Y}, "mutual_knn", topk=5)


def test_register_metric__one_record_adds_a_metric_to_the_tables_the_matrix_and_the_dropdown(
    rng, monkeypatch, toy_layers
):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the real registry stays as it was

    def mean_gap(X, Y, *, device=None) -> float:
        return registry.pair_value("mean_gap", X, Y, device)

    register_metric(Metric(
        name="mean_gap", function=mean_gap, prepare=lambda X, name, params: X.mean(dim=0).norm(),
        compare=lambda a, b: float(abs(a - b)), short_name="mean gap", description="distance of mean norms",
        is_distance=True,
    ))
    assert metric_choices()[-1].name == "mean_gap" and METRIC_NAMES["mean_gap"] == "mean gap"
    assert "mean_gap" in SIMILARITY_METRICS and "mean_gap" in DISTANCE_METRICS and METRIC_DEFAULTS["mean_gap"] == {}
    A = toy_layers(rng)
    result = similarity_matrix(A, A, "mean_gap")
    np.testing.assert_array_equal(np.diag(result.matrix), 0.0)
    assert not result.higher_is_better and result.label == "mean gap" and result.best_match() == tuple(A)


def test_metric_label__names_the_options_that_change_the_value():
    assert [m.name for m in metric_choices()] == list(SIMILARITY_METRICS)
    assert metric_label("linear_cka", {}) == "linear CKA"
    assert metric_label("rbf_cka", {"bandwidth": 0.5}) == "RBF CKA (bandwidth 0.5 x median distance)"
    assert metric_label("mutual_knn", {"k": 10, "clip_quantile": 0.95}) == "mutual k-NN (k=10, clipped at q=0.95)"
    assert metric_label("svcca", {}) == "SVCCA (99% variance)"
    with pytest.raises(LayerscopeError, match="metric='cca' must be one of"):
        metric_label("cca", {})
