"""Find latents by a token or word: among their strongest tokens, else in the texts of their top examples."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.analysis.features.stats import FeatureStats
from core.tokens import display_tokens

if TYPE_CHECKING:
    from core.activations import Activations


def search_features(stats: FeatureStats, acts: Activations, query: str, *, top: int = 5) -> np.ndarray:
    """Latent ids whose `top` strongest tokens include `query` (a token, case-insensitive), else whose
    top examples' input texts contain it; ordered by the activation on the match, strongest first."""
    query = query.strip().lower()
    if not query:
        return np.arange(stats.n_features)
    tokens = np.array([t.strip().lower() for t in display_tokens(acts.tokens)], dtype=object)
    rows = stats.top_rows[:, :top]
    values = stats.top_values[:, :top]
    valid = rows >= 0
    hit = np.zeros(rows.shape, dtype=bool)
    hit[valid] = tokens[rows[valid]] == query
    if not hit.any():
        owner = np.searchsorted(acts.offsets, np.where(valid, rows, 0), side="right") - 1
        contains = np.array([query in t.lower() for t in acts.texts])
        hit = valid & contains[owner]
    strength = np.where(hit, values, -np.inf).max(axis=1)
    found = np.flatnonzero(np.isfinite(strength))
    return found[np.argsort(-strength[found], kind="stable")]
