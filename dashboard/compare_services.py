"""Cached wrappers for the Compare page: similarity matrices, comparison partners (another model
on the same inputs, the two-seed digits pair)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

import core
from core.analysis.similarity import SimilarityResult, similarity_matrix
from core.errors import LayerscopeError
from dashboard import services, widgets
from dashboard.geometry_services import run_dataset

TEXT_MODELS = ("minilm", "smollm2")  # bundled text models offered as partners


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


def extract_partner(run: Mapping[str, Any], model_name: str,
                    progress: Callable[[int, int, str], None] | None = None) -> str:
    """Extract `model_name` (bundled name, folder or hub id) on the text run's own inputs, with
    its default layers and the run's pooling; returns the new run's key."""
    model_name = model_name.strip()
    if not model_name:
        raise LayerscopeError("no model given: pick a bundled model or type a model folder or hub id")
    model = services.load_model(model_name)
    if model.modality != "text":
        raise LayerscopeError(f"model {model_name!r} takes {model.modality} inputs; run {run['key']} holds text")
    acts = core.extract(model, run_dataset(run["key"]), layers="all", pooling=run["pooling"],
                        max_length=run.get("max_length"), store=services.store(), progress=progress)
    services.list_runs.clear()
    return acts.key
