"""Cached wrappers over core for runs: models in st.cache_resource, results in st.cache_data.

Pages call these, never core's heavy functions directly, so a rerun reads memory or the
store instead of recomputing. Results are cached twice: in the store by core (shared
across sessions and restarts) and here in memory, keyed by run key and parameters.
Cached models are shared by every session: nothing here mutates them or seeds global
random state. Work that reports progress is in dashboard/actions.py, so that a progress
bar is never replayed from a cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import streamlit as st

import core
from core import recipes
from core.analysis import probes, projection
from core.analysis.geometry import GeometryResult, geometry_by_layer
from core.analysis.probes import ProbeResult
from core.recipes.geometry import input_curvature
from core.series import Series
from core.series import record as series_record
from core.store import Store

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_POINTS = 50_000  # maps draw a seeded subsample above this many inputs

Params = tuple[tuple[str, Any], ...]  # keyword parameters as a hashable, order-free key


def params_key(params: Mapping[str, Any]) -> Params:
    """Keyword parameters as a hashable, order-free key (for st.cache_data and session state)."""
    return tuple(sorted(params.items()))


# ----- workspace, models, runs -------------------------------------------------------------------
def store() -> Store:
    """The workspace (LAYERSCOPE_WORKSPACE, default ./workspace)."""
    return Store()


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def load_model(name: str, reinit: bool = False, seed: int = 0) -> core.LoadedModel:
    """A model shared by every session (never modify it)."""
    return core.load_model(name, reinit=reinit, seed=seed, workspace=store().root)


def list_runs() -> list[dict]:
    """Complete runs of the current workspace, newest first (re-read at most every 5 s)."""
    return _list_runs(str(store().root))


@st.cache_data(show_spinner=False, ttl=5)
def _list_runs(root: str) -> list[dict]:
    return Store(root).list_runs()


list_runs.clear = _list_runs.clear  # call cached.list_runs.clear() after writing a run


@st.cache_data(show_spinner="Reading dataset...", max_entries=8)
def dataset(spec: str) -> core.Dataset:
    """A dataset as core.load_dataset reads it (bundled name, file or folder)."""
    return core.load_dataset(spec)


def open_run(key: str) -> core.Activations:
    """The run, checksums verified once per process per file (cheap on reruns)."""
    return store().open_run(key)


@st.cache_resource(show_spinner=False, max_entries=4)
def _recipe_context(root: str) -> recipes.Context:
    return recipes.Context(Store(root), load_model=load_model, open_run=open_run)


def recipe_context() -> recipes.Context:
    """The context every session builds figures in (core.recipes): the cached models and runs, results computed once."""
    return _recipe_context(str(store().root))


# ----- maps --------------------------------------------------------------------------------------
def subsample(n: int) -> np.ndarray:
    """Rows a map draws: all of them, or a seeded subsample of MAX_POINTS."""
    return projection.subsample_indices(n, max_points=MAX_POINTS, seed=0)


@st.cache_data(show_spinner="Projecting every layer (PCA)...", max_entries=32)
def aligned_maps(run_key: str, method: str) -> list[np.ndarray]:
    """(n_inputs, 2) maps of every layer, aligned across layers; UMAP only once its job stored it."""
    acts = open_run(run_key)
    return [np.asarray(m) for m in projection.aligned_projection_cached(acts, acts.layer_names, method, store())]


@st.cache_data(show_spinner=False, max_entries=64)
def tsne_map(run_key: str, layer: str) -> np.ndarray:
    """(n_inputs, 2) t-SNE map of one layer (not aligned with the others)."""
    return np.asarray(projection.projection_cached(open_run(run_key), layer, "tsne", store()))


@st.cache_data(show_spinner=False, max_entries=256)
def _trustworthiness(run_key: str, layer: str, method: str, coords_hash: int, _coords: np.ndarray) -> float:
    acts = open_run(run_key)
    return float(projection.trustworthiness(np.asarray(acts.pooled(layer)), _coords, n_neighbors=10))


def trustworthiness(run_key: str, layer: str, coords: np.ndarray, method: str) -> float:
    """How well the (n, 2) map `coords` keeps the layer's 10 nearest neighbours."""
    return _trustworthiness(run_key, layer, method, hash(coords.tobytes()), coords)


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours(run_key: str, layer: str, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the `k` inputs nearest to `row` in the layer's full space, and their cosine distances."""
    acts = open_run(run_key)
    indices, distances = projection.nearest_neighbors(np.asarray(acts.pooled(layer)), row, k=k, metric="cosine")
    return np.asarray(indices), np.asarray(distances)


# ----- probes -------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=64)
def probe_result(run_key: str, column: str, task: str = "auto", control: str = "auto") -> ProbeResult:
    """Linear probe of `column` on every layer, with the named control, through the store."""
    return probes.probe_by_layer_cached(open_run(run_key), column, store(), task=task, control=control, dropna=True,
                                        drop_rare=True)


# ----- geometry -----------------------------------------------------------------------------------
@st.cache_data(show_spinner="Reading geometry...", max_entries=64)
def geometry_result(run_key: str, metrics: tuple[str, ...], options: Params) -> GeometryResult:
    """Geometry of every layer of a run; call it once actions.compute_geometry stored it."""
    return geometry_by_layer(open_run(run_key), tuple(metrics), store=store(), **dict(options))


def input_curvature_by_layer(run_key: str, index: int, variant: str) -> np.ndarray:
    """(L,) curvature (radians) of input `index` at each layer of the run, NaN where undefined.

    Computed in the recipe context, so the Trajectory page's curvature figure reuses it.
    """
    return input_curvature(recipe_context(), open_run(run_key), index, variant)


# ----- checkpoint series --------------------------------------------------------------------------
def list_series() -> list[Series]:
    """Complete checkpoint series of the current workspace, newest first (re-read at most every 5 s)."""
    return _list_series(str(store().root))


@st.cache_data(show_spinner=False, ttl=5)
def _list_series(root: str) -> list[Series]:
    return series_record.list_series(Store(root))


list_series.clear = _list_series.clear  # call cached.list_series.clear() after writing a series
