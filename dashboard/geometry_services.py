"""Cached wrappers over core for the Geometry, Trajectory and Logit lens pages.

Geometry results are cached twice: in the store by core (a second visit, also after a
restart, reads them instead of recomputing) and in memory with st.cache_data keyed by
the run key and options. Work that can take long (geometry over all layers, extracting
the untrained twin) takes a progress callback and is not wrapped in st.cache_data, so
its progress bar is never replayed from a cache; pages call it behind a button.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st

import core
from core.activations import display_tokens
from core.analysis.geometry import GeometryResult, curvature, geometry_by_layer
from core.analysis.lens import LensResult, logit_lens
from core.data import Dataset
from core.errors import LayerscopeError
from dashboard import services

Progress = Callable[[int, int, str], None]
TWIN_SEED = 0


# ----- geometry ------------------------------------------------------------------------
def options_key(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options as a hashable, order-free key (for st.cache_data and session state)."""
    return tuple(sorted(options.items()))


def compute_geometry(
    run_key: str, metrics: Sequence[str], options: Mapping[str, Any], progress: Progress | None = None
) -> GeometryResult:
    """Geometry of every layer of a run, through the store (instant when stored)."""
    acts = services.open_run(run_key)
    return geometry_by_layer(acts, tuple(metrics), store=services.store(), progress=progress, **dict(options))


@st.cache_data(show_spinner="Reading geometry...", max_entries=64)
def geometry_result(run_key: str, metrics: tuple[str, ...], options: tuple[tuple[str, Any], ...]) -> GeometryResult:
    """The same as compute_geometry, memoised; call it once the result is in the store."""
    return compute_geometry(run_key, metrics, dict(options))


# ----- the untrained twin --------------------------------------------------------------
def is_untrained(run: Mapping[str, Any]) -> bool:
    """A run extracted from re-initialised weights (its model cannot be reloaded by name)."""
    return str(run["model"].get("weights", "")).startswith("reinit")


def twin_name(run: Mapping[str, Any], seed: int = TWIN_SEED) -> str:
    return f"{run['model']['name']} (untrained, seed {seed})"


def find_twin(run: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], seed: int = TWIN_SEED) -> dict | None:
    """A stored run of the re-initialised twin on the same inputs, layers and pooling, if any."""
    for other in runs:
        if (
            other["model"]["name"] == twin_name(run, seed)
            and other["dataset"]["fingerprint"] == run["dataset"]["fingerprint"]
            and list(other["layers"]) == list(run["layers"])
            and other["pooling"] == run["pooling"]
            and other.get("max_length") == run.get("max_length")
        ):
            return dict(other)
    return None


def run_dataset(run_key: str) -> Dataset:
    """The run's own inputs and labels as a Dataset (same fingerprint, so the same store keys)."""
    acts = services.open_run(run_key)
    info = acts.meta["dataset"]
    if info.get("modality") != "text" or acts.meta.get("has_images"):
        raise LayerscopeError(
            f"run {run_key} holds {info.get('modality')} inputs; the untrained twin is extracted here "
            "for text runs only"
        )
    return Dataset(
        name=info["name"],
        modality="text",
        table=acts.table,
        text_column=info["text_column"],
        label_columns=tuple(info.get("label_columns", ())),
        fingerprint=info["fingerprint"],
        description=info.get("description", ""),
    )


def extract_twin(run: Mapping[str, Any], progress: Progress | None = None, seed: int = TWIN_SEED) -> str:
    """Extract the run's inputs from the same architecture with re-initialised weights; returns the run key."""
    if is_untrained(run):
        raise LayerscopeError(f"run {run['key']} is already from an untrained model; pick the trained run")
    model = services.load_model(run["model"]["name"], reinit=True, seed=seed)
    acts = core.extract(
        model,
        run_dataset(run["key"]),
        layers=list(run["layers"]),
        pooling=run["pooling"],
        max_length=run.get("max_length"),
        store=services.store(),
        progress=progress,
    )
    services.list_runs.clear()
    return acts.key


# ----- one input's trajectory ------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def input_trajectory(run_key: str, layer: str, index: int) -> tuple[np.ndarray, list[str]]:
    """(T, d) token vectors of input `index` at `layer`, and its T tokens as text."""
    acts = services.open_run(run_key)
    rows = acts.input_rows(index)
    return acts.input_tokens(layer, index).astype(np.float64), display_tokens(acts.tokens[rows])


@st.cache_data(show_spinner=False, max_entries=256)
def input_curvature_by_layer(run_key: str, index: int, variant: str) -> np.ndarray:
    """(L,) curvature (radians) of input `index` at each layer of the run, NaN where undefined."""
    acts = services.open_run(run_key)
    return np.array([curvature(acts.input_tokens(layer, index), variant=variant) for layer in acts.layer_names])


# ----- logit lens --------------------------------------------------------------------------
@st.cache_data(show_spinner="Reading every layer through the unembedding...", max_entries=64)
def lens_result(_model: core.LoadedModel, model_name: str, text: str, top_k: int) -> LensResult:
    """core.analysis.lens.logit_lens, memoised by model name, text and k (the model is not hashed)."""
    return logit_lens(_model, text, top_k=top_k)
