"""Known answers and invariants of core.analysis.geometry (METRICS.md "Geometry of one layer")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.activations import Activations
from core.analysis import geometry
from core.analysis.geometry import (
    GeometryResult,
    anisotropy,
    curvature,
    curvature_per_input,
    effective_rank,
    geometry_by_layer,
    intrinsic_dimension,
    matrix_entropy,
    prompt_entropy,
    turning_angles,
)
from core.errors import LayerscopeError
from core.store import Store


# ----- helpers -------------------------------------------------------------------------
def _embed(Y: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Y (n, k) placed in `dim` dimensions by a random orthonormal map."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, Y.shape[1])))  # (dim, k)
    return Y @ basis.T


def _subspace_points(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Isotropic Gaussian on a random k-dim linear subspace of R^384."""
    return _embed(rng.standard_normal((n, k)), 384, rng)


def _sphere_points(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on the k-sphere S^k (in R^{k+1}), randomly rotated into R^384."""
    Y = rng.standard_normal((n, k + 1))
    return _embed(Y / np.linalg.norm(Y, axis=1, keepdims=True), 384, rng)


def _orthogonal_equal_variance(k: int, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n x d data whose centred version has exactly k equal singular values."""
    scores = rng.standard_normal((n, k))
    scores -= scores.mean(axis=0)
    scores, _ = np.linalg.qr(scores)  # orthonormal, zero-mean columns
    return 5.0 * _embed(scores, d, rng) + 2.0


def _offsets(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _write_run(folder: Path, layers: dict[str, np.ndarray], *, pooling: str, offsets=None) -> Activations:
    """A minimal complete run folder read back as Activations."""
    (folder / "layers").mkdir(parents=True)
    files = {}
    for i, (name, array) in enumerate(layers.items()):
        files[name] = f"layers/{i:03d}.npy"
        np.save(folder / files[name], array)
    n_inputs = len(offsets) - 1 if offsets is not None else len(next(iter(layers.values())))
    if offsets is not None:
        np.save(folder / "offsets.npy", offsets)
        np.save(folder / "lengths.npy", np.diff(offsets))
    meta = {
        "layers": list(layers),
        "layer_files": files,
        "pooling": pooling,
        "n_inputs": n_inputs,
        "dims": {name: int(a.shape[1]) for name, a in layers.items()},
        "model": {"name": "toy", "modality": "text"},
        "dataset": {"name": "toy"},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return Activations(folder, meta)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def small_chunks(monkeypatch):
    """Force many chunks so chunk boundaries are exercised on small data."""
    monkeypatch.setattr(geometry, "_CHUNK_BYTES", 4096)


# ----- curvature -------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["signed", "abs"])
def test_curvature__straight_line_is_zero(rng, variant):
    direction = rng.standard_normal(64)
    line = 100.0 + np.arange(12)[:, None] * direction * np.linspace(1, 3, 12)[:, None]  # uneven speed
    assert curvature(line, variant=variant) == pytest.approx(0.0, abs=1e-9)


def test_curvature__path_reversing_every_step_is_pi(rng):
    direction = rng.standard_normal(64)
    path = np.array([direction * (i % 2) for i in range(10)])
    assert curvature(path) == pytest.approx(math.pi, abs=1e-12)
    assert curvature(path, variant="abs") == pytest.approx(0.0, abs=1e-12)  # |cos| folds pi onto 0


def test_curvature__random_gaussian_steps_in_high_d_near_half_pi(rng):
    walk = np.cumsum(rng.standard_normal((200, 2000)), axis=0)
    assert curvature(walk) == pytest.approx(math.pi / 2, abs=0.03)


def test_turning_angles__match_arccos_definition_and_abs_is_folded(rng):
    path = rng.standard_normal((40, 3)).cumsum(axis=0)
    steps = np.diff(path, axis=0)
    cos = np.sum(steps[1:] * steps[:-1], axis=1) / (
        np.linalg.norm(steps[1:], axis=1) * np.linalg.norm(steps[:-1], axis=1)
    )
    signed = turning_angles(path)
    folded = turning_angles(path, variant="abs")
    assert signed.shape == (38,)
    np.testing.assert_allclose(signed, np.arccos(np.clip(cos, -1, 1)), atol=1e-9)
    np.testing.assert_allclose(folded, np.arccos(np.abs(cos)), atol=1e-9)  # Skean et al.
    assert folded.min() >= 0 and folded.max() <= math.pi / 2
    assert signed.max() > math.pi / 2  # low d: some sharp turns, so the bound is not trivial


def test_turning_angles__zero_length_step_is_skipped_not_zero(rng):
    a, b, c, e = rng.standard_normal((4, 16))
    path = np.stack([a, b, b, c, e])  # step b -> b has zero length
    angles = turning_angles(path)
    assert np.isnan(angles[:2]).all() and np.isfinite(angles[2])
    assert curvature(path) == pytest.approx(angles[2])
    assert math.isnan(curvature(np.stack([a, a, a, a])))  # only zero-length steps


def test_curvature__fewer_than_3_tokens_is_nan():
    assert math.isnan(curvature(np.ones((2, 5)) * [[1.0], [2.0]]))
    assert turning_angles(np.zeros((1, 5))).shape == (0,)


def test_curvature_per_input__counts_skipped_and_matches_single_inputs(rng, small_chunks):
    lengths = [5, 2, 0, 1, 30, 4, 3]
    offsets = _offsets(lengths)
    X = rng.standard_normal((offsets[-1], 40)).astype(np.float32)
    X[offsets[5] : offsets[6]] = X[offsets[5]]  # input 5: identical tokens, no usable step
    values, n_skipped = curvature_per_input(X, offsets)
    assert values.shape == (7,)
    assert n_skipped == 4  # lengths 2, 0, 1 and the frozen input
    assert np.isnan(values[[1, 2, 3, 5]]).all()
    for i in (0, 4, 6):
        assert values[i] == pytest.approx(curvature(X[offsets[i] : offsets[i + 1]]), rel=1e-12)


def test_curvature__bad_variant_and_offsets_name_the_value(rng):
    with pytest.raises(LayerscopeError, match="'cosine'"):
        curvature(rng.standard_normal((5, 3)), variant="cosine")
    with pytest.raises(LayerscopeError, match="end at the number of token rows \\(10\\)"):
        curvature_per_input(rng.standard_normal((10, 3)), np.array([0, 4, 9]))
    with pytest.raises(LayerscopeError, match="non-finite"):
        curvature(np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 1.0]]))


# ----- intrinsic dimension ---------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 5, 10])
@pytest.mark.parametrize("sampler", [_subspace_points, _sphere_points], ids=["subspace", "sphere"])
def test_intrinsic_dimension__twonn_recovers_k_within_10_percent(rng, k, sampler):
    X = sampler(k, 2000, rng)
    assert intrinsic_dimension(X) == pytest.approx(k, rel=0.10)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # skdim logs -log(0) for its unused y_ at discard 0
def test_intrinsic_dimension__agrees_with_skdim(rng):
    skdim = pytest.importorskip("skdim")
    X = _sphere_points(5, 2000, rng)
    # skdim's default discard_fraction=0.1 keeps the lowest 90% of mu, like our fraction=0.9
    ours = intrinsic_dimension(X, fraction=0.9)
    theirs = skdim.id.TwoNN(discard_fraction=0.1).fit(X).dimension_
    assert ours == pytest.approx(theirs, rel=1e-3)  # brief asks for 5%; same formula and exact kNN
    mle = skdim.id.TwoNN(discard_fraction=0.0, method="mle").fit(X).dimension_  # (N - 1) / sum log mu
    assert intrinsic_dimension(X, "mle") == pytest.approx(mle, rel=1e-3)


def test_intrinsic_dimension__mle_is_sensible(rng):
    assert intrinsic_dimension(_subspace_points(5, 2000, rng), "mle") == pytest.approx(5, rel=0.10)


def test_intrinsic_dimension__invariant_to_translation_and_scale(rng):
    X = _sphere_points(3, 500, rng)
    assert intrinsic_dimension(1e3 + 7.0 * X) == pytest.approx(intrinsic_dimension(X), rel=1e-6)


def test_intrinsic_dimension__duplicates_removed(rng):
    X = _subspace_points(4, 400, rng)
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


# ----- matrix entropy ------------------------------------------------------------------------
def _reference_entropy(X: np.ndarray, alpha: float) -> float:
    """METRICS.md formula written out with an explicit n x n Gram matrix."""
    Z = X - X.mean(axis=0)
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    K = Z @ Z.T
    lam = np.clip(np.linalg.eigvalsh(K / np.trace(K)), 0, None)
    lam = lam[lam > 1e-12]
    H = -np.sum(lam * np.log(lam)) if alpha == 1 else np.log(np.sum(lam**alpha)) / (1 - alpha)
    return H / math.log(min(X.shape))


@pytest.mark.parametrize("shape", [(30, 80), (200, 12)], ids=["n<d", "n>d"])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_matrix_entropy__matches_reference_formula_on_either_gram_side(rng, shape, alpha):
    X = rng.standard_normal(shape) * rng.uniform(0.1, 3, size=shape[1])
    assert matrix_entropy(X, alpha=alpha) == pytest.approx(_reference_entropy(X, alpha), rel=1e-9)


def test_matrix_entropy__isotropic_near_one_and_rank_one_zero(rng):
    assert matrix_entropy(rng.standard_normal((4000, 32))) > 0.98
    rank_one = 3.0 + rng.standard_normal((300, 1)) * rng.standard_normal((1, 50))
    for alpha in (0.5, 1.0, 2.0):
        assert matrix_entropy(rank_one, alpha=alpha) == pytest.approx(0.0, abs=1e-9)


def test_matrix_entropy__continuous_at_alpha_one(rng):
    X = rng.standard_normal((100, 20)) * np.arange(1, 21)
    at_one = matrix_entropy(X, alpha=1.0)
    for alpha in (1 - 1e-4, 1 + 1e-4):
        assert matrix_entropy(X, alpha=alpha) == pytest.approx(at_one, abs=1e-4)
    assert matrix_entropy(X, alpha=1 + 1e-12) == pytest.approx(at_one, abs=1e-9)
    assert matrix_entropy(X, alpha=2.0) < at_one < matrix_entropy(X, alpha=0.5)  # Rényi decreases in alpha


def test_matrix_entropy__constant_activations_and_bad_alpha_raise(rng):
    with pytest.raises(LayerscopeError, match="all 10 rows of X are identical"):
        matrix_entropy(np.full((10, 5), 0.1))
    with pytest.raises(LayerscopeError, match="alpha=0.0"):
        matrix_entropy(rng.standard_normal((10, 5)), alpha=0.0)


def test_prompt_entropy__per_input_matches_matrix_entropy_and_nan_when_undefined(rng, small_chunks):
    lengths = [6, 1, 40, 3, 0, 5]  # 40 > d: Gram on the feature side
    offsets = _offsets(lengths)
    X = rng.standard_normal((offsets[-1], 24))
    X[offsets[5] : offsets[6]] = X[offsets[5]]  # identical tokens
    values = prompt_entropy(X, offsets)
    assert values.shape == (6,)
    assert np.isnan(values[[1, 4, 5]]).all()
    for i in (0, 2, 3):
        assert values[i] == pytest.approx(matrix_entropy(X[offsets[i] : offsets[i + 1]]), rel=1e-9)


# ----- effective rank and anisotropy -------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 7])
def test_effective_rank__k_orthogonal_equal_variance_directions_is_k(rng, k):
    assert effective_rank(_orthogonal_equal_variance(k, 500, 64, rng)) == pytest.approx(k, rel=1e-9)


def test_effective_rank__constant_raises():
    with pytest.raises(LayerscopeError, match="all 20 rows of X are identical"):
        effective_rank(np.full((20, 4), 3.0))


def test_anisotropy__isotropic_near_zero_and_common_offset_near_one(rng):
    X = rng.standard_normal((2000, 64))
    X -= X.mean(axis=0)
    iso = anisotropy(X)
    assert abs(iso["mean_cosine"]) < 0.02
    assert iso["top_eigenvalue_share"] < 2.0 / 64
    offset = rng.standard_normal(64)
    shifted = anisotropy(X + 40.0 * offset / np.linalg.norm(offset))  # offset norm 40, noise norm ~8
    assert shifted["mean_cosine"] > 0.9
    assert shifted["top_eigenvalue_share"] == pytest.approx(iso["top_eigenvalue_share"])  # covariance ignores offset
    assert isinstance(iso["mean_cosine"], float)


def test_anisotropy__seeded_and_exact_for_few_rows(rng):
    X = rng.standard_normal((500, 16)) + 1.0
    assert anisotropy(X, seed=3) == anisotropy(X, seed=3)
    few = X[:30]
    unit = few / np.linalg.norm(few, axis=1, keepdims=True)
    cos = unit @ unit.T
    exact = cos[np.triu_indices(30, k=1)].mean()
    assert anisotropy(few)["mean_cosine"] == pytest.approx(exact, rel=1e-12)  # 435 pairs <= n_pairs: all used


def test_anisotropy__constant_and_bad_n_pairs_raise(rng):
    with pytest.raises(LayerscopeError, match="covariance is zero"):
        anisotropy(np.ones((10, 3)))
    with pytest.raises(LayerscopeError, match="n_pairs=0"):
        anisotropy(rng.standard_normal((10, 3)), n_pairs=0)


# ----- all layers ---------------------------------------------------------------------------------
def _tokens_run(tmp_path: Path, rng: np.random.Generator) -> tuple[Activations, np.ndarray]:
    lengths = list(rng.integers(3, 12, size=60)) + [2, 1]  # two inputs too short for curvature
    offsets = _offsets(lengths)
    layers = {
        "embed": rng.standard_normal((offsets[-1], 16)).astype(np.float32),
        "block.0": np.cumsum(rng.standard_normal((offsets[-1], 16)), axis=0).astype(np.float32),
        "block.1": np.full((offsets[-1], 16), 0.5, dtype=np.float32),  # constant layer
    }
    return _write_run(tmp_path / "runA", layers, pooling="tokens", offsets=offsets), offsets


def test_geometry_by_layer__tokens_run_matches_the_single_functions(tmp_path, rng):
    acts, offsets = _tokens_run(tmp_path, rng)
    calls = []
    result = geometry_by_layer(acts, progress=lambda done, total, msg: calls.append((done, total)))
    assert isinstance(result, GeometryResult)
    assert result.layer_names == ("embed", "block.0", "block.1")
    assert calls[-1] == (18, 18) and len(calls) == 18

    values, skipped = curvature_per_input(acts["block.0"], offsets)
    assert result.mean["curvature"][1] == pytest.approx(np.nanmean(values))
    assert result.q25["curvature"][1] <= result.mean["curvature"][1] <= result.q75["curvature"][1]
    assert result.n_skipped["curvature"][1] == skipped == 2
    assert "2 of 62 inputs skipped (2 with fewer than 3 tokens)" in result.reasons["curvature"]

    means = np.stack([acts["embed"][offsets[i] : offsets[i + 1]].astype(np.float64).mean(0) for i in range(62)])
    assert result.mean["intrinsic_dimension"][0] == pytest.approx(intrinsic_dimension(means))
    assert result.mean["dataset_entropy"][0] == pytest.approx(matrix_entropy(means))
    assert result.mean["effective_rank"][0] == pytest.approx(effective_rank(means))
    assert result.mean["anisotropy_mean_cosine"][0] == pytest.approx(anisotropy(means)["mean_cosine"])
    assert np.isnan(result.q25["dataset_entropy"]).all()  # dataset-level: no spread

    # the constant layer: NaN with a reason, never a number
    for metric in result.metrics:
        if metric != "anisotropy_mean_cosine":  # constant non-zero rows have cosine 1: defined
            assert np.isnan(result.mean[metric][2]), metric
            assert result.layer_reasons[metric][2], metric
    assert "layer block.1" in result.reasons["dataset_entropy"]
    assert result.layer_reasons["dataset_entropy"][0] is None

    frame = result.to_frame()
    assert list(frame.columns) == ["layer", "metric", "value", "q25", "q75"]
    assert len(frame) == 3 * 7
    assert result.params["curvature_variant"] == "signed" and result.params["seed"] == 0


def test_geometry_by_layer__pooled_input_gives_per_token_metrics_nan_with_reason(rng):
    layers = {"a": rng.standard_normal((50, 8)), "b": rng.standard_normal((50, 8))}
    result = geometry_by_layer(layers, ["curvature", "prompt_entropy", "effective_rank"])
    assert np.isnan(result.mean["curvature"]).all() and np.isnan(result.mean["prompt_entropy"]).all()
    assert "needs pooling='tokens'" in result.reasons["curvature"]
    assert np.isfinite(result.mean["effective_rank"]).all() and result.reasons["effective_rank"] is None


def test_geometry_by_layer__subsamples_id_with_seed_and_records_it(rng):
    layers = {"a": _subspace_points(3, 300, rng)}
    result = geometry_by_layer(layers, ["intrinsic_dimension"], max_points=100, seed=5)
    chosen = np.sort(np.random.default_rng(5).choice(300, 100, replace=False))
    assert result.mean["intrinsic_dimension"][0] == pytest.approx(intrinsic_dimension(layers["a"][chosen]))
    assert result.params["id_points_used"] == [100] and result.params["max_points"] == 100


def test_geometry_by_layer__cached_in_store(tmp_path, rng, monkeypatch):
    acts, _ = _tokens_run(tmp_path, rng)
    store = Store(tmp_path / "ws")
    first = geometry_by_layer(acts, ["curvature", "anisotropy"], store=store, curvature_variant="abs")
    monkeypatch.setattr(geometry, "_compute_geometry", lambda *a, **k: pytest.fail("recomputed"))
    second = geometry_by_layer(acts, ["curvature", "anisotropy"], store=store, curvature_variant="abs")
    np.testing.assert_array_equal(first.mean["curvature"], second.mean["curvature"])
    assert second.reasons == first.reasons and second.params["curvature_variant"] == "abs"
    assert (second.mean["curvature"][:2] <= math.pi / 2).all()
    with pytest.raises(LayerscopeError, match="needs an Activations run"):
        geometry_by_layer({"a": rng.standard_normal((30, 4))}, ["effective_rank"], store=store)


def test_geometry_by_layer__rejects_unknown_metric_and_option(rng):
    layers = {"a": rng.standard_normal((30, 4))}
    with pytest.raises(LayerscopeError, match="'straightness'"):
        geometry_by_layer(layers, ["straightness"])
    with pytest.raises(LayerscopeError, match="id_fractoin"):
        geometry_by_layer(layers, ["effective_rank"], id_fractoin=0.5)
    with pytest.raises(LayerscopeError, match="curvature_variant|'sine'"):
        geometry_by_layer(layers, ["curvature"], curvature_variant="sine")


def test_geometry_by_layer__inputs_without_tokens_are_left_out_and_counted(tmp_path, rng):
    offsets = _offsets([4, 0, 6, 5, 0, 7] * 5)
    acts = _write_run(tmp_path / "runB", {"h": rng.standard_normal((offsets[-1], 8))}, pooling="tokens", offsets=offsets)
    result = geometry_by_layer(acts, ["effective_rank", "curvature"])
    assert result.n_skipped["effective_rank"][0] == 10 and result.n_skipped["curvature"][0] == 10
    assert "10 input(s) without tokens left out" in result.reasons["effective_rank"]
    means = np.stack([acts["h"][offsets[i] : offsets[i + 1]].mean(0) for i in range(30) if offsets[i + 1] > offsets[i]])
    assert result.mean["effective_rank"][0] == pytest.approx(effective_rank(means))
