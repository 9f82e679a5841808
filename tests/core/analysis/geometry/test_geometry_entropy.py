"""Prompt entropy: the matrix entropy over each input's tokens."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.geometry import matrix_entropy, prompt_entropy


def test_prompt_entropy__per_input_matches_matrix_entropy_and_nan_when_undefined(rng, small_chunks, offsets_of):
    lengths = [6, 1, 40, 3, 0, 5]  # 40 > d: Gram on the feature side
    offsets = offsets_of(lengths)
    X = rng.standard_normal((offsets[-1], 24))
    X[offsets[5] : offsets[6]] = X[offsets[5]]  # identical tokens
    values = prompt_entropy(X, offsets)
    assert values.shape == (6,)
    assert np.isnan(values[[1, 4, 5]]).all()
    for i in (0, 2, 3):
        assert values[i] == pytest.approx(matrix_entropy(X[offsets[i] : offsets[i + 1]]), rel=1e-9)
