"""The maps the explorer shows for a run: which projection is ready, and what to say meanwhile.

PCA maps are computed at once. UMAP runs as a background job (dashboard/jobs.py); until it
is in the store the PCA maps are shown with a note saying so. t-SNE is computed for the
current layer only.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.activations import Activations
from dashboard import cached, jobs


def maps_for(acts: Activations, method_label: str, layer: str) -> tuple[list[np.ndarray], str, str | None]:
    """(n, 2) maps of every layer for the chosen method ("PCA", "UMAP", "t-SNE"), the axis name, and a note."""
    pca = cached.aligned_maps(acts.key, "pca")
    if method_label == "PCA":
        return pca, "PC", None
    if method_label == "UMAP":
        job = jobs.aligned_umap_job(acts.key)
        if job is None:
            job = jobs.start_aligned_umap(cached.store(), acts.key, acts.layer_names)
        if job.state == "done":
            return cached.aligned_maps(acts.key, "umap"), "UMAP", None
        if job.state == "failed":
            return pca, "PC", f"UMAP failed ({job.error}); showing PCA."
        what = "compiling UMAP (numba, about a minute on a fresh server)" if not jobs.umap_ready() else (
            f"aligned UMAP of {len(acts.layer_names)} layers: {job.done}/{job.total or len(acts.layer_names)}")
        return pca, "PC", (f"UMAP coming ({what}, {job.elapsed:.0f} s so far). Showing PCA meanwhile; "
                           "the map switches by itself.")
    maps = list(pca)
    with st.spinner(f"t-SNE of {layer}..."):
        maps[acts.layer_names.index(layer)] = cached.tsne_map(acts.key, layer)
    return maps, "t-SNE", "t-SNE is computed per layer and is not aligned across layers; other layers show PCA."


def umap_settled(run_key: str) -> bool:
    """The run's aligned UMAP job ended (done or failed): the page can stop polling."""
    job = jobs.aligned_umap_job(run_key)
    return job is not None and job.over
