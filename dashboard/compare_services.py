"""Cached wrappers for the Compare page: similarity matrices and the two-seed digits pair."""

from __future__ import annotations

from typing import Any

import streamlit as st

import core
from core.analysis.similarity import SimilarityResult, similarity_matrix
from dashboard import services, widgets


@st.cache_data(show_spinner="Comparing every pair of layers...", max_entries=64)
def similarity(run_a: str, run_b: str, metric: str, params: tuple[tuple[str, Any], ...]) -> SimilarityResult:
    """Layer x layer similarity of two runs, through the store."""
    return similarity_matrix(
        services.open_run(run_a), services.open_run(run_b), metric, store=services.store(), **dict(params)
    )


def make_digits_pair() -> tuple[str, str]:
    """Train digits-mlp with seeds 0 and 1 and extract both on demo:digits (a convergent-learning pair)."""
    digits = core.load_dataset("demo:digits")
    keys = []
    for name in ("digits-mlp", "digits-mlp:seed=1"):
        model = services.load_model(name)
        keys.append(core.extract(model, digits, layers="all", pooling="mean", store=services.store()).key)
    services.list_runs.clear()
    st.session_state[widgets.RUN_KEY] = keys[0]
    return keys[0], keys[1]
