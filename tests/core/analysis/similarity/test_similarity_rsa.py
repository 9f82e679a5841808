"""RSA against scipy's Spearman correlation of correlation-distance RDMs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from core.analysis.similarity import rsa


def test_rsa__identical_is_one_and_matches_scipy_spearman_of_pdist(rng, related):
    X = rng.standard_normal((40, 9))
    Y = np.tanh(related(X, 5, 1.0, rng))
    assert rsa(X, X) == pytest.approx(1.0, abs=1e-12)
    assert rsa(X, 7.0 * X + 1.0) == pytest.approx(1.0, abs=1e-12)
    expected = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation"))[0]
    assert rsa(X, Y) == pytest.approx(expected, abs=1e-10)


def test_rsa__ties_get_average_ranks_like_scipy():
    X = np.array([[0, 1, 2], [0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 0, 2]], dtype=float)
    Y = np.array([[1, 5, 2], [3, 1, 0], [0, 1, 4], [2, 2, 1], [0, 3, 1]], dtype=float)
    expected = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation"))[0]
    assert rsa(X, Y) == pytest.approx(expected, abs=1e-10)
