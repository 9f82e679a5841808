"""The reference code's conventions: matrix entropy variant "skean" and curvature degenerate="zero",
each checked against a port of the reference function on data where the conventions differ."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from core.analysis.geometry import (
    curvature,
    curvature_per_input,
    geometry_by_layer,
    matrix_entropy,
    prompt_entropy,
    turning_angles,
)
from core.errors import LayerscopeError


# ----- ports of the reference functions -------------------------------------------------------
def _skean_normalize(R: torch.Tensor) -> torch.Tensor:
    """Port of `normalize` (OFSkean/information_flow experiments/utils/misc/model_dataloader_utils.py,
    from waltonfuture/Matrix-Entropy), applied to every layer's rows before `compute_entropy`."""
    R = R - R.mean(dim=0)
    return R / torch.norm(R, p=2, dim=1, keepdim=True)


def _repitl_matrix_alpha_entropy(K: torch.Tensor, alpha: float) -> torch.Tensor:
    """Port of repitl `matrixAlphaEntropy` (uk-cliplab/representation-itl src/repitl/matrix_itl.py):
    alpha == 1 -> `vonNeumannEntropy`, else `generalizedInformationPotential`'s eigenvalue path
    (eigenvalues > 0, renormalised). Its alpha == 2 Frobenius shortcut is not ported (nor tested)."""
    ek, _ = torch.linalg.eigh(K)
    mek = ek[torch.gt(ek, 0.0)]
    mek = mek / torch.sum(mek)
    if alpha == 1:
        return -1 * torch.sum(mek * torch.log(mek))
    return (1.0 / (1.0 - alpha)) * torch.log(torch.sum(torch.exp(alpha * torch.log(mek))))


def _skean_compute_entropy(X: np.ndarray, alpha: float) -> float:
    """Port of `compute_entropy` (OFSkean/information_flow experiments/utils/metrics/metric_functions.py),
    normalisation "maxEntropy", for one layer (L = 1) of float64 rows."""
    hidden_states = _skean_normalize(torch.from_numpy(X).double())[None]  # (L, N, D)
    _, N, D = hidden_states.shape
    if N > D:
        cov = torch.matmul(hidden_states.transpose(1, 2), hidden_states)
    else:
        cov = torch.matmul(hidden_states, hidden_states.transpose(1, 2))
    cov = torch.clamp(cov, min=0)
    layer_cov = cov[0].double() / torch.trace(cov[0].double())
    entropy = _repitl_matrix_alpha_entropy(layer_cov, alpha).item()
    return entropy / min(math.log(N), math.log(D))


def _skean_compute_curvature(tokens: np.ndarray) -> float:
    """Port of `compute_curvature` (OFSkean/information_flow experiments/utils/metrics/metric_functions.py),
    "raw", for one input at one layer: tokens (N, D)."""
    layer_p = torch.from_numpy(tokens).double()

    def calculate_paired_curvature(a, b):
        dotproduct = torch.abs(a.T @ b)
        norm_a = torch.norm(a)
        norm_b = torch.norm(b)
        if norm_a == 0 or norm_b == 0:
            return 0
        argument = torch.clamp(dotproduct / (norm_a * norm_b), min=-1, max=1)
        return torch.arccos(argument).item()

    summation, counter = 0, 0
    for k in range(1, layer_p.shape[0] - 1):
        v_k = layer_p[k].unsqueeze(1) - layer_p[k - 1].unsqueeze(1)
        v_kplusone = layer_p[k + 1].unsqueeze(1) - layer_p[k].unsqueeze(1)
        summation += calculate_paired_curvature(v_kplusone, v_k)
        counter += 1
    return summation / counter if counter > 0 else 0


# ----- data where the conventions differ --------------------------------------------------------
def _low_rank(n: int, d: int, rng: np.random.Generator, *, offset: float = 0.0) -> np.ndarray:
    """Rank-3 signal plus 5% noise, optionally shifted far from the origin."""
    return offset + rng.standard_normal((n, 3)) @ rng.standard_normal((3, d)) + 0.05 * rng.standard_normal((n, d))


def _stuttering_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Token rows of inputs with repeated consecutive tokens, inputs of 1 and 2 tokens and one frozen input."""
    inputs = []
    for length in (9, 1, 6, 2, 12, 5, 4):
        walk = np.cumsum(rng.standard_normal((length, 16)), axis=0)
        if length >= 5:
            walk[2] = walk[1]  # a zero-length step
            walk[-1] = walk[-2]
        inputs.append(walk)
    inputs.append(np.repeat(rng.standard_normal((1, 16)), 4, axis=0))  # only zero-length steps
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in inputs])]).astype(np.int64)
    return np.concatenate(inputs), offsets


# ----- matrix entropy, "skean" ----------------------------------------------------------------
@pytest.mark.parametrize("shape", [(200, 40), (40, 200)], ids=["n>d", "n<d"])
@pytest.mark.parametrize("offset", [0.0, 3.0], ids=["centred", "offset"])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_matrix_entropy__skean_matches_the_reference_port_where_exact_differs(rng, shape, offset, alpha):
    X = _low_rank(*shape, rng, offset=offset)
    reference = _skean_compute_entropy(X, alpha)
    assert matrix_entropy(X, alpha=alpha, variant="skean") == pytest.approx(reference, abs=1e-7)
    assert abs(matrix_entropy(X, alpha=alpha) - reference) > 0.05  # the clamp's effect on low-rank data


def test_prompt_entropy__skean_per_input_matches_the_reference_port_on_either_side(rng, small_chunks, offsets_of):
    lengths = [6, 40, 3, 24, 30, 12]  # d = 24: token side, feature side and the tie (token side, as theirs)
    offsets = offsets_of(lengths)
    X = np.concatenate([_low_rank(n, 24, rng, offset=2.0) for n in lengths])
    values = prompt_entropy(X, offsets, variant="skean")
    for i, (a, b) in enumerate(pairwise(offsets)):
        assert values[i] == pytest.approx(_skean_compute_entropy(X[a:b], 1.0), abs=1e-7), i
    assert np.max(np.abs(values - prompt_entropy(X, offsets))) > 0.05


def test_matrix_entropy__skean_clamp_makes_two_opposite_rows_look_maximally_spread():
    # centred, two rows are z and -z: rank 1, entropy 0; clamping the Gram's -1 entries gives the identity
    X = np.array([[1.0, 2.0, 0.5], [3.0, -1.0, 2.0]])
    assert matrix_entropy(X) == pytest.approx(0.0, abs=1e-12)
    assert matrix_entropy(X, variant="skean") == pytest.approx(1.0, abs=1e-12)
    assert _skean_compute_entropy(X, 1.0) == pytest.approx(1.0, abs=1e-12)


def test_entropy_variant__unknown_name_is_refused_with_the_value(rng):
    with pytest.raises(LayerscopeError, match="variant='clamped' must be one of: exact, skean"):
        matrix_entropy(rng.standard_normal((10, 4)), variant="clamped")
    with pytest.raises(LayerscopeError, match="entropy_variant='Skean'"):
        geometry_by_layer({"a": rng.standard_normal((30, 4))}, ["dataset_entropy"], entropy_variant="Skean")


# ----- curvature, degenerate="zero" -------------------------------------------------------------
def test_curvature__zero_matches_the_reference_port_on_repeated_tokens_and_short_inputs(rng, small_chunks):
    X, offsets = _stuttering_inputs(rng)
    reference = np.array([_skean_compute_curvature(X[a:b]) for a, b in pairwise(offsets)])
    values, skipped = curvature_per_input(X, offsets, variant="abs", degenerate="zero")
    assert skipped == 0
    np.testing.assert_allclose(values, reference, rtol=0, atol=1e-7)
    for i, (a, b) in enumerate(pairwise(offsets)):
        assert curvature(X[a:b], variant="abs", degenerate="zero") == pytest.approx(reference[i], abs=1e-7)
    skipping, n_skipped = curvature_per_input(X, offsets, variant="abs")
    assert n_skipped == 4  # 1 token, 2 tokens, frozen, and 5 tokens whose every angle touches a zero step
    assert np.nanmax(np.abs(skipping - reference)) > 0.05  # skipped angles raise the mean of the others


def test_turning_angles__zero_gives_zero_at_zero_length_steps_only(rng):
    a, b, c, e = rng.standard_normal((4, 16))
    path = np.stack([a, b, b, c, e])
    zero = turning_angles(path, variant="abs", degenerate="zero")
    skip = turning_angles(path, variant="abs")
    np.testing.assert_array_equal(zero[:2], [0.0, 0.0])
    assert np.isnan(skip[:2]).all() and zero[2] == skip[2] > 0


def test_geometry_by_layer__zero_is_recorded_and_averages_the_reference_over_inputs(tmp_path, rng, write_run):
    X, offsets = _stuttering_inputs(rng)
    acts = write_run(tmp_path / "run", {"h": X.astype(np.float32)}, pooling="tokens", offsets=offsets)
    result = geometry_by_layer(acts, ["curvature"], curvature_variant="abs", curvature_degenerate="zero")
    rows = acts["h"].astype(np.float64)
    reference = [_skean_compute_curvature(rows[a:b]) for a, b in pairwise(offsets)]
    assert result.mean["curvature"][0] == pytest.approx(np.mean(reference), abs=1e-7)  # their mean over prompts
    assert result.n_skipped["curvature"][0] == 0 and result.reasons["curvature"] is None
    assert result.params["curvature_degenerate"] == "zero"
    skipped = geometry_by_layer(acts, ["curvature"], curvature_variant="abs")
    assert skipped.params["curvature_degenerate"] == "skip" and skipped.n_skipped["curvature"][0] == 4


def test_curvature__zero_is_refused_for_the_signed_variant(rng):
    path = rng.standard_normal((6, 4))
    with pytest.raises(LayerscopeError, match="degenerate='zero' must go with variant='abs'"):
        curvature(path, degenerate="zero")
    with pytest.raises(LayerscopeError, match="curvature_degenerate='zero' must go with .*got curvature_variant='s"):
        geometry_by_layer({"a": rng.standard_normal((30, 4))}, ["curvature"], curvature_degenerate="zero")
    with pytest.raises(LayerscopeError, match="degenerate='nan' must be one of: skip, zero"):
        turning_angles(path, variant="abs", degenerate="nan")
