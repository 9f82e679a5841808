"""Cached wrappers for the explorer and probes pages (projections, neighbours, probes).

Results live in the store (shared across restarts) and in st.cache_data (shared
across reruns). UMAP runs in a background job so no page waits on numba.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from core.analysis import probes, projection
from core.figures.maps import animated_layer_map, layer_map, shared_ranges
from dashboard import jobs, services

MAX_POINTS = 50_000
METHODS = {"PCA": "pca", "UMAP": "umap", "t-SNE": "tsne"}


def subsample(n: int) -> np.ndarray:
    return projection.subsample_indices(n, max_points=MAX_POINTS, seed=0)


@st.cache_data(show_spinner="Projecting every layer (PCA)...", max_entries=32)
def aligned_maps(run_key: str, method: str) -> list[np.ndarray]:
    acts = services.open_run(run_key)
    return [np.asarray(m) for m in projection.aligned_projection_cached(acts, acts.layer_names, method, services.store())]


def _umap_job_key(run_key: str) -> str:
    return f"aligned-umap-{run_key}"


def umap_job_done(acts) -> bool:
    job = jobs.board().get(_umap_job_key(acts.key))
    return job is not None and job.state in ("done", "failed")


def _start_umap(acts) -> jobs.Job:
    run_key = acts.key

    def work(job: jobs.Job) -> None:
        warm = jobs.board().get(jobs.UMAP_WARMUP)
        while warm is not None and warm.state == "running":  # share the compilation, not repeat it
            job.progress(0, len(acts.layer_names), "waiting for the UMAP warm-up")
            time.sleep(1)
        projection.aligned_projection_cached(
            services.open_run(run_key), acts.layer_names, "umap", services.store(),
            progress=lambda done, total, message="": job.progress(done, total, message),
        )

    return jobs.board().submit(_umap_job_key(run_key), f"aligned UMAP of {run_key}", work)


def maps_for(acts, method_label: str, layer: str) -> tuple[list[np.ndarray], str, str | None]:
    """Maps of every layer (aligned) for the chosen method, the axis name, and a note.

    UMAP is computed in the background; until it is in the store the PCA maps are
    shown with a note saying so. t-SNE is computed for the current layer only.
    """
    pca = aligned_maps(acts.key, "pca")
    if method_label == "PCA":
        return pca, "PC", None
    if method_label == "UMAP":
        job = jobs.board().get(_umap_job_key(acts.key))
        if job is not None and job.state == "done":
            return aligned_maps(acts.key, "umap"), "UMAP", None
        if job is not None and job.state == "failed":
            return pca, "PC", f"UMAP failed ({job.error}); showing PCA."
        if job is None:
            job = _start_umap(acts)
        if job.state == "done":
            return aligned_maps(acts.key, "umap"), "UMAP", None
        warming = not jobs.umap_ready()
        what = "compiling UMAP (numba, about a minute on a fresh server)" if warming else (
            f"aligned UMAP of {len(acts.layer_names)} layers: {job.done}/{job.total or len(acts.layer_names)}")
        return pca, "PC", f"UMAP coming ({what}, {job.elapsed:.0f} s so far). Showing PCA meanwhile; the map switches by itself."
    maps = list(pca)
    with st.spinner(f"t-SNE of {layer}..."):
        maps[acts.layer_names.index(layer)] = tsne_map(acts.key, layer)
    return maps, "t-SNE", "t-SNE is computed per layer and is not aligned across layers; other layers show PCA."


@st.cache_data(show_spinner=False, max_entries=64)
def tsne_map(run_key: str, layer: str) -> np.ndarray:
    acts = services.open_run(run_key)
    return np.asarray(projection.projection_cached(acts, layer, "tsne", services.store()))


@st.cache_data(show_spinner=False, max_entries=256)
def _trustworthiness(run_key: str, layer: str, method: str, coords_hash: int, _coords: np.ndarray) -> float:
    acts = services.open_run(run_key)
    return float(projection.trustworthiness(np.asarray(acts.pooled(layer)), _coords, n_neighbors=10))


def trustworthiness(acts, layer: str, maps: list[np.ndarray], axis_name: str) -> float:
    coords = maps[acts.layer_names.index(layer)]
    return _trustworthiness(acts.key, layer, axis_name, hash(coords.tobytes()), coords)


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours(run_key: str, layer: str, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    acts = services.open_run(run_key)
    indices, distances = projection.nearest_neighbors(np.asarray(acts.pooled(layer)), row, k=k, metric="cosine")
    return np.asarray(indices), np.asarray(distances)


def layer_figure(maps, layers, layer, texts, labels, color_by, rows, highlight, selected, neighbour_rows, axis_name, title):
    return layer_map(
        maps[layers.index(layer)], texts=texts, labels=labels, color_by=color_by, rows=rows, highlight=highlight,
        selected=selected, neighbours=neighbour_rows, title=title, axis_name=axis_name, ranges=shared_ranges(maps),
    )


def animated_map(maps, layers, texts, labels, color_by, rows, axis_name, title):
    return animated_layer_map(maps, layers, texts=texts, labels=labels, color_by=color_by, rows=rows,
                              title=title, axis_name=axis_name)


@st.cache_data(show_spinner=False, max_entries=64)
def probe_result(run_key: str, column: str, task: str = "auto"):
    acts = services.open_run(run_key)
    return probes.probe_by_layer_cached(acts, column, services.store(), task=task, dropna=True, drop_rare=True)
