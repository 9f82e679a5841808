"""The explorer's map: which projection it can show now, the label filters, and the inputs a selection picks.

PCA maps are computed at once. UMAP maps already in the store are read back at once;
otherwise UMAP runs as a background job (dashboard/jobs.py) and, until it is in the store,
the PCA maps are shown under a note that a fragment redraws every `POLL_S` seconds (what
runs, the time spent) and that reruns the page once the job is over, so the UMAP map
replaces the PCA map without a reload. t-SNE is computed for the current layer only, behind
a live progress bar (sklearn reports no iterations: the bar names the step and the clock
moves).

A box or lasso drawn on the map picks inputs for the table under it; the rows are kept in
session state (with the run they belong to) and outlined on the map of every layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.activations import Activations
from core.analysis.projection.cached import aligned_projection_stored
from core.figures.maps import is_continuous
from dashboard import actions, cached, jobs, state
from dashboard.live_progress import LiveProgress, is_stopped, stopped

POLL_S = 1.0  # seconds between two looks at the UMAP job: the note's elapsed time moves at this pace
TABLE_MAX_ROWS = 1_000  # the inputs table lists at most this many rows
TSNE_STOPPED = "explorer_tsne_stopped"  # session state: the t-SNE request a Cancel click stopped


@dataclass(frozen=True)
class ShownMaps:
    """The maps the explorer draws now and what to say about them."""

    maps: list[np.ndarray]  # (n_inputs, 2) per layer
    axis_name: str  # "PC", "UMAP" or "t-SNE"
    note: str | None = None  # a note that does not change (t-SNE per layer, UMAP failed)
    umap_pending: bool = False  # UMAP is coming: draw `umap_progress` above the map


def maps_for(acts: Activations, method_label: str, layer: str) -> ShownMaps:
    """The maps of every layer for the chosen method ("PCA", "UMAP", "t-SNE"), starting UMAP's job when needed."""
    pca = cached.aligned_maps(acts.key, "pca")
    if method_label == "PCA":
        return ShownMaps(pca, "PC")
    if method_label == "UMAP":
        job = jobs.aligned_umap_job(acts.key)
        if job is None:  # no job on this server: the maps may be stored already (an earlier server, the demo)
            stored = aligned_projection_stored(acts, acts.layer_names, "umap", cached.store())
            if stored is not None:
                return ShownMaps(stored, "UMAP")
            job = jobs.start_aligned_umap(cached.store(), acts.key, acts.layer_names)
        if job.state == "done":
            return ShownMaps(cached.aligned_maps(acts.key, "umap"), "UMAP")
        if job.state == "failed":
            return ShownMaps(pca, "PC", f"UMAP failed ({job.error}); showing PCA.")
        return ShownMaps(pca, "PC", umap_pending=True)
    request = ("tsne", acts.key, layer)
    asked_again = is_stopped(TSNE_STOPPED, request)
    if stopped(TSNE_STOPPED, request, what=f"t-SNE of {layer}", retry="Compute t-SNE again"):
        return ShownMaps(pca, "PC", "t-SNE was stopped; showing PCA.")
    if asked_again:  # "Compute t-SNE again" was clicked: start afresh, without the note that it was stopped
        st.rerun()
    bar = LiveProgress(f"t-SNE of {layer}", key=TSNE_STOPPED, request=request, describe=lambda done, total, what: what)
    try:
        actions.compute_tsne(acts.key, layer, progress=bar)
    finally:
        bar.empty()
    maps = list(pca)
    maps[acts.layer_names.index(layer)] = cached.tsne_map(acts.key, layer)
    return ShownMaps(maps, "t-SNE", "t-SNE is computed per layer and is not aligned across layers; "
                     "other layers show PCA.")


def umap_note(job: jobs.Job, n_layers: int, *, warm: bool) -> str:
    """What the page says while UMAP is coming: the stage, the time spent, that the map will switch."""
    if not warm:
        what = "compiling UMAP (numba, about a minute on a fresh server)"
    elif job.done and job.done >= (job.total or n_layers):
        what = "storing the maps"
    else:  # one AlignedUMAP fit covers every layer: there is no per-layer count to show until it ends
        what = f"aligned UMAP of {n_layers} layers in one fit"
    return (f"UMAP coming ({what}, {job.elapsed:.0f} s so far). Showing PCA meanwhile; "
            "the map switches by itself.")


@st.fragment(run_every=POLL_S)
def umap_progress(run_key: str, n_layers: int) -> None:
    """The UMAP note, redrawn every POLL_S seconds; the whole page reruns once the job is over."""
    job = jobs.aligned_umap_job(run_key)
    if job is None or job.over:
        st.rerun(scope="app")  # the next run reads the map from the store (or says why it failed)
    st.info(umap_note(job, n_layers, warm=jobs.umap_ready()), icon=":material/hourglass_top:")


# ----- label filters ---------------------------------------------------------------------------
def label_filters(acts: Activations) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """The sidebar's filters: values to keep for each categorical label column, a range for each numeric one.

    Returns (label_filter, label_ranges) as core.recipes.maps.label_mask takes them; a column
    left at "all values" (or its full range) is absent.
    """
    label_filter: dict[str, list[str]] = {}
    label_ranges: dict[str, list[float]] = {}
    for column in acts.label_columns:
        values = acts.table[column]
        if is_continuous(values.to_numpy()):
            numbers = pd.to_numeric(values, errors="coerce").dropna()
            whole = bool((numbers == numbers.round()).all())
            low, high = (int(numbers.min()), int(numbers.max())) if whole else (float(numbers.min()), float(numbers.max()))
            picked = st.slider(column, low, high, (low, high), help=f"Keep inputs whose {column} is in this range.")
            if tuple(picked) != (low, high):
                label_ranges[column] = [float(picked[0]), float(picked[1])]
        else:
            options = sorted(values.astype(str).unique())
            picked = st.multiselect(column, options, placeholder="all values",
                                    help=f"Keep only inputs whose {column} is one of these (none chosen: all).")
            if picked:
                label_filter[column] = list(picked)
    return label_filter, label_ranges


# ----- box / lasso selection -------------------------------------------------------------------
def picked_rows(event: Mapping[str, Any] | None) -> tuple[int | None, list[int] | None]:
    """What a selection event of the map picks: (a clicked input, None), (None, rows in a box or lasso) or neither.

    Every trace of the map carries the input row in customdata; a row on two traces (a point
    and its search outline) counts once.
    """
    selection = (event or {}).get("selection") or {}
    points = selection.get("points") or []
    rows = sorted({int(np.ravel(p["customdata"])[0]) for p in points if p.get("customdata") is not None})
    if selection.get("box") or selection.get("lasso"):
        return None, (rows or None)
    return (rows[0] if rows else None), None


def region(run_key: str) -> list[int] | None:
    """The rows a box or lasso picked on this run's map, if any."""
    kept = st.session_state.get(state.Explorer.REGION)
    if isinstance(kept, dict) and kept.get("run") == run_key and kept.get("rows"):
        return [int(r) for r in kept["rows"]]
    return None


def set_region(run_key: str, rows: list[int] | None) -> None:
    """Keep `rows` as the map's box/lasso selection of run `run_key` (None clears it)."""
    if rows:
        st.session_state[state.Explorer.REGION] = {"run": run_key, "rows": [int(r) for r in rows]}
    else:
        st.session_state.pop(state.Explorer.REGION, None)


def inputs_table(acts: Activations, rows: np.ndarray, *, max_rows: int = TABLE_MAX_ROWS) -> pd.DataFrame:
    """(min(len(rows), max_rows), 2 + n_labels) the inputs' row, text and label columns, in row order."""
    rows = np.sort(np.asarray(rows, dtype=int))[:max_rows]
    table = pd.DataFrame({"row": rows, "text": [acts.texts[i] for i in rows]})
    for column in acts.label_columns:
        table[column] = acts.table[column].to_numpy()[rows]
    return table
