"""Curvature of token trajectories: known angles, skipped steps and inputs, bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.analysis.geometry import curvature, curvature_per_input, turning_angles
from core.errors import LayerscopeError


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


def test_curvature_per_input__counts_skipped_and_matches_single_inputs(rng, small_chunks, offsets_of):
    lengths = [5, 2, 0, 1, 30, 4, 3]
    offsets = offsets_of(lengths)
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
