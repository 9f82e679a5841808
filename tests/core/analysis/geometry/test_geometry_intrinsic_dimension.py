"""TwoNN and MLE intrinsic dimension: known dimensions, skdim agreement and invariances."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.geometry import distinct_rows, geometry_by_layer, intrinsic_dimension
from core.errors import LayerscopeError


@pytest.mark.parametrize("k", [2, 5, 10])
@pytest.mark.parametrize("sampler", ["subspace", "sphere"])
def test_intrinsic_dimension__twonn_recovers_k_within_10_percent(rng, k, sampler, subspace_points, sphere_points):
    X = {"subspace": subspace_points, "sphere": sphere_points}[sampler](k, 2000, rng)
    assert intrinsic_dimension(X) == pytest.approx(k, rel=0.10)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # skdim logs -log(0) for its unused y_ at discard 0
def test_intrinsic_dimension__agrees_with_skdim(rng, sphere_points):
    skdim = pytest.importorskip("skdim")
    X = sphere_points(5, 2000, rng)
    # skdim's default discard_fraction=0.1 keeps the lowest 90% of mu, like our fraction=0.9
    ours = intrinsic_dimension(X, fraction=0.9)
    theirs = skdim.id.TwoNN(discard_fraction=0.1).fit(X).dimension_
    assert ours == pytest.approx(theirs, rel=1e-3)  # brief asks for 5%; same formula and exact kNN
    mle = skdim.id.TwoNN(discard_fraction=0.0, method="mle").fit(X).dimension_  # (N - 1) / sum log mu
    assert intrinsic_dimension(X, "mle") == pytest.approx(mle, rel=1e-3)


def test_intrinsic_dimension__mle_is_sensible(rng, subspace_points):
    assert intrinsic_dimension(subspace_points(5, 2000, rng), "mle") == pytest.approx(5, rel=0.10)


def test_intrinsic_dimension__invariant_to_translation_and_scale(rng, sphere_points):
    X = sphere_points(3, 500, rng)
    assert intrinsic_dimension(1e3 + 7.0 * X) == pytest.approx(intrinsic_dimension(X), rel=1e-6)


def test_intrinsic_dimension__duplicates_removed(rng, subspace_points):
    X = subspace_points(4, 400, rng)
    repeated = np.concatenate([X, X[:150], X[:10]])
    assert intrinsic_dimension(repeated) == pytest.approx(intrinsic_dimension(X), rel=1e-12)


def test_intrinsic_dimension__too_few_or_identical_points_raise(rng):
    with pytest.raises(LayerscopeError, match="X has 19 rows and only 19 are distinct"):
        intrinsic_dimension(rng.standard_normal((19, 8)))
    with pytest.raises(LayerscopeError, match="all rows are identical"):
        intrinsic_dimension(np.ones((50, 8)))
    with pytest.raises(LayerscopeError, match="fraction=1.0"):
        intrinsic_dimension(rng.standard_normal((50, 8)), fraction=1.0)
    with pytest.raises(LayerscopeError, match="'pca'"):
        intrinsic_dimension(rng.standard_normal((50, 8)), "pca")


def test_distinct_rows__counts_ten_percent_duplicates_and_id_is_that_of_the_distinct_set(rng):
    X = rng.standard_normal((450, 4)) @ rng.standard_normal((4, 32))
    copies = X[rng.choice(450, 50, replace=False)]  # 50 of 500 points (10%) repeat another point
    repeated = rng.permutation(np.concatenate([X, copies]))
    points, removed = distinct_rows(repeated)
    assert removed == 50 and points.shape == (450, 32)
    assert intrinsic_dimension(repeated) == pytest.approx(intrinsic_dimension(X), rel=1e-12)


def test_geometry_by_layer__reports_duplicates_removed_per_layer(rng):
    X = rng.standard_normal((450, 4)) @ rng.standard_normal((4, 32))
    layers = {"distinct": X[:400], "copies": np.concatenate([X[:360], X[:40]])}  # 10% duplicates
    result = geometry_by_layer(layers, ["intrinsic_dimension", "effective_rank"])
    assert result.n_duplicates.tolist() == [0, 40]
    assert result.mean["intrinsic_dimension"][1] == pytest.approx(intrinsic_dimension(X[:360]), rel=1e-12)
    assert geometry_by_layer(layers, ["effective_rank"]).n_duplicates is None  # not computed: not counted
