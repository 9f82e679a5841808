"""Cached wrappers over core for SAEs: stored SAEs in st.cache_resource, their results in st.cache_data.

A stored SAE (a torch module) is cached under its key and creation time, so an SAE written
again under the same key is read afresh; it is shared by every session and never
modified. Feature statistics, maps, examples and matchings are computed behind a button
by dashboard/actions.py and read back here once stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import streamlit as st

import core
from core.analysis import features as ft
from core.analysis import sae as sae_core
from core.analysis.features import FeatureMatching, FeatureStats, LogitEffects
from core.analysis.sae import StoredSAE
from core.recipes.sae import strongest_tokens
from core.runs import is_untrained
from core.store import Store
from dashboard import cached

WINDOW = 8  # tokens of context on each side of an example


# ----- stored SAEs ---------------------------------------------------------------------------------
def list_saes() -> list[dict]:
    """Every SAE of the workspace, newest first (re-read at most every 5 s)."""
    return _list_saes(str(cached.store().root))


@st.cache_data(show_spinner=False, ttl=5)
def _list_saes(root: str) -> list[dict]:
    return sae_core.list_saes(Store(root))


list_saes.clear = _list_saes.clear  # call cached_sae.list_saes.clear() after writing an SAE


def describe(meta: Mapping[str, Any]) -> str:
    """One line naming an SAE: architecture, width, run and layer."""
    return sae_core.describe_sae(meta)


def open_sae(key: str) -> StoredSAE:
    """The stored SAE `key` (a shared object: never modify it)."""
    created = next((m.get("created", "") for m in list_saes() if m["key"] == key), "")
    return _open_sae(str(cached.store().root), key, created)


@st.cache_resource(show_spinner="Loading SAE...", max_entries=16)
def _open_sae(root: str, key: str, created: str) -> StoredSAE:
    return sae_core.open_sae(Store(root), key)


def run_of(entry: StoredSAE) -> core.Activations:
    """The run an SAE was trained on (LayerscopeError if it was deleted)."""
    return cached.open_run(entry.run_key)


def causal_model_for(run: Mapping[str, Any]) -> core.LoadedModel | None:
    """The run's own causal LM (loaded once per server), or None for encoders and untrained twins."""
    if not run["model"].get("is_causal_lm") or is_untrained(run):
        return None
    return cached.load_model(run["model"]["name"])


# ----- feature statistics ------------------------------------------------------------------------
def stats_ready(key: str) -> bool:
    """The SAE's feature statistics are in the store."""
    return ft.stored_feature_stats(open_sae(key), cached.store()) is not None


@st.cache_data(show_spinner="Reading feature statistics...", max_entries=16)
def stats(key: str) -> FeatureStats:
    """The stored statistics (call once stats_ready)."""
    entry = open_sae(key)
    return ft.feature_stats_cached(entry, run_of(entry), cached.store())


@st.cache_data(show_spinner="Reading logit effects...", max_entries=16)
def logit_effects(key: str) -> LogitEffects | None:
    """Tokens promoted / suppressed by each latent, for SAEs on a causal LM's run; None otherwise."""
    entry = open_sae(key)
    run = next((r for r in cached.list_runs() if r["key"] == entry.run_key), None)
    model = causal_model_for(run) if run is not None else None
    if model is None:
        return None
    return ft.logit_effects_cached(entry, model, cached.store())


@st.cache_data(show_spinner=False, max_entries=512)
def examples(key: str, feature: int, rows: tuple[int, ...]) -> list[ft.FeatureExample]:
    """The token rows `rows` as examples of `feature`, with WINDOW tokens of context."""
    entry = open_sae(key)
    return ft.feature_examples(entry.sae, run_of(entry), entry.layer, feature, list(rows), window=WINDOW,
                               exclude_first_token=entry.exclude_first_token)


@st.cache_data(show_spinner=False, max_entries=64)
def search(key: str, query: str) -> np.ndarray:
    """Latents whose strongest tokens (or examples' text) contain `query`."""
    return ft.search_features(stats(key), run_of(open_sae(key)), query)


@st.cache_data(show_spinner=False, max_entries=16)
def top_tokens(key: str, n: int = 5) -> list[str]:
    """Each latent's `n` strongest distinct tokens as one string (for tables and hover text)."""
    return strongest_tokens(stats(key), run_of(open_sae(key)), n)


# ----- matching ------------------------------------------------------------------------------------
def matching_ready(a: str, b: str, variant: str = ft.DEFAULT_MATCHING_VARIANT) -> bool:
    """The matching of SAEs `a` and `b` (under `variant`'s conventions) is in the store."""
    return ft.stored_matching(open_sae(a), open_sae(b), cached.store(), variant=variant) is not None


@st.cache_data(show_spinner="Reading the matching...", max_entries=16)
def matching(a: str, b: str, variant: str = ft.DEFAULT_MATCHING_VARIANT) -> FeatureMatching:
    """The stored matching of SAEs `a` and `b` (call once matching_ready)."""
    ea, eb = open_sae(a), open_sae(b)
    return ft.match_features_cached(ea, eb, run_of(ea), run_of(eb), cached.store(), variant=variant)
