"""Cached wrappers over core.analysis.sae and core.analysis.features for the SAE pages,
and the feature card the gallery and the matching page both draw.

SAEs and their results live in the store; stored SAEs (torch modules) are kept in
st.cache_resource keyed by their key and creation time and are never mutated; feature
statistics, maps, examples and matchings in st.cache_data. Work that can take long
(training, the statistics pass, matching) takes a progress callback and is not wrapped in
st.cache_data, so a progress bar is never replayed from a cache; pages call it behind a button.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import streamlit as st

from core.analysis import features as ft
from core.analysis import sae as sae_core
from core.analysis.features import FeatureMatching, FeatureStats, LogitEffects
from core.analysis.sae import SAEConfig, StoredSAE
from core.export import figure_spec
from core.figures import sae as figs
from core.store import Store
from dashboard import geometry_services as gs
from dashboard import services
from dashboard.figure_export import show_figure

Progress = Callable[[int, int, str], None]
SAE_KEY = "sae_key"  # session state: the SAE the gallery shows
EXAMPLES_PER_CARD = 4
WINDOW = 8  # tokens of context on each side of an example


# ----- stored SAEs ----------------------------------------------------------------------------
def list_saes() -> list[dict]:
    """Every SAE of the workspace, newest first (re-read at most every 5 s)."""
    return _list_saes(str(services.store().root))


@st.cache_data(show_spinner=False, ttl=5)
def _list_saes(root: str) -> list[dict]:
    return sae_core.list_saes(Store(root))


list_saes.clear = _list_saes.clear  # pages call sae_services.list_saes.clear() after writing an SAE


def describe(meta: Mapping[str, Any]) -> str:
    return sae_core.describe_sae(meta)


def open_sae(key: str) -> StoredSAE:
    """The stored SAE `key` (a shared object: never modify it)."""
    created = next((m.get("created", "") for m in list_saes() if m["key"] == key), "")
    return _open_sae(str(services.store().root), key, created)


@st.cache_resource(show_spinner="Loading SAE...", max_entries=16)
def _open_sae(root: str, key: str, created: str) -> StoredSAE:
    return sae_core.open_sae(Store(root), key)


def run_of(entry: StoredSAE):
    """The run an SAE was trained on (LayerscopeError if it was deleted)."""
    return services.open_run(entry.run_key)


def causal_model_for(run: Mapping[str, Any]):
    """The run's own causal LM (loaded once per server), or None for encoders and untrained twins."""
    if not run["model"].get("is_causal_lm") or gs.is_untrained(run):
        return None
    return services.load_model(run["model"]["name"])


def train(run: Mapping[str, Any], layer: str, config: SAEConfig, progress=None) -> StoredSAE:
    """Train (or read back) an SAE on a run's layer; with a causal LM, the next-token loss is measured too."""
    acts = services.open_run(run["key"])
    sae_core.check_tokens_run(acts, layer)
    config.check_for(acts.dim(layer))
    try:
        return sae_core.train_sae_on_run(acts, layer, config, store=services.store(), model=causal_model_for(run),
                                         progress=progress)
    finally:
        list_saes.clear()


def import_folder(folder: str, run: Mapping[str, Any], layer: str, exclude_first_token: bool = True) -> StoredSAE:
    """Copy an SAELens folder into the workspace as an SAE of `layer` of `run`."""
    acts = services.open_run(run["key"])
    entry = sae_core.import_saelens(folder.strip(), acts, layer, store=services.store(),
                                    model=causal_model_for(run), exclude_first_token=exclude_first_token)
    list_saes.clear()
    return entry


# ----- feature statistics ------------------------------------------------------------------------
def stats_ready(key: str) -> bool:
    return ft.stored_feature_stats(open_sae(key), services.store()) is not None


def compute_stats(key: str, progress: Progress | None = None) -> FeatureStats:
    entry = open_sae(key)
    return ft.feature_stats_cached(entry, run_of(entry), services.store(), progress=progress)


@st.cache_data(show_spinner="Reading feature statistics...", max_entries=16)
def stats(key: str) -> FeatureStats:
    """The stored statistics (call once stats_ready)."""
    return compute_stats(key)


@st.cache_data(show_spinner="Reading logit effects...", max_entries=16)
def logit_effects(key: str) -> LogitEffects | None:
    """Tokens promoted / suppressed by each latent, for SAEs on a causal LM's run; None otherwise."""
    entry = open_sae(key)
    run = next((r for r in services.list_runs() if r["key"] == entry.run_key), None)
    if run is None:
        return None
    model = causal_model_for(run)
    if model is None:
        return None
    return ft.logit_effects_cached(entry, model, services.store())


@st.cache_data(show_spinner="Mapping the decoder directions...", max_entries=16)
def feature_map(key: str, method: str) -> np.ndarray:
    """(F, 2) PCA or UMAP of the decoder directions."""
    return ft.decoder_map(open_sae(key), services.store(), method=method)


@st.cache_data(show_spinner=False, max_entries=512)
def examples(key: str, feature: int, rows: tuple[int, ...]) -> list[ft.FeatureExample]:
    entry = open_sae(key)
    return ft.feature_examples(entry.sae, run_of(entry), entry.layer, feature, list(rows), window=WINDOW,
                               exclude_first_token=entry.exclude_first_token)


@st.cache_data(show_spinner=False, max_entries=64)
def search(key: str, query: str) -> np.ndarray:
    entry = open_sae(key)
    return ft.search_features(stats(key), run_of(entry), query)


@st.cache_data(show_spinner=False, max_entries=16)
def top_tokens(key: str, n: int = 5) -> list[str]:
    """Each latent's `n` strongest distinct tokens as one string (for tables and hover text)."""
    st_ = stats(key)
    readable = ft.readable_tokens(run_of(open_sae(key)).tokens)
    out = []
    for rows in st_.top_rows:
        seen = list(dict.fromkeys(readable[r].strip() for r in rows if r >= 0))[:n]
        out.append(", ".join(seen))
    return out


# ----- matching ------------------------------------------------------------------------------------
def matching_ready(a: str, b: str) -> bool:
    return ft.stored_matching(open_sae(a), open_sae(b), services.store()) is not None


def compute_matching(a: str, b: str, progress: Progress | None = None) -> FeatureMatching:
    ea, eb = open_sae(a), open_sae(b)
    return ft.match_features_cached(ea, eb, run_of(ea), run_of(eb), services.store(), progress=progress)


@st.cache_data(show_spinner="Reading the matching...", max_entries=16)
def matching(a: str, b: str) -> FeatureMatching:
    return compute_matching(a, b)


# ----- the feature card ------------------------------------------------------------------------------
def render_feature_card(key: str, feature: int, *, full: bool = False, name: str = "") -> None:
    """Draw one latent's card: numbers, highlighted top examples, histogram, label association, logit effects."""
    st_ = stats(key)
    f = int(feature)
    density = st_.density[f]
    st.markdown(
        f"**{name}Feature {f}** · fires on {density:.2%} of tokens · max {st_.max_activation[f]:.2f} · "
        f"mean when active {st_.mean_activation[f]:.2f}"
    )
    if density == 0:
        st.caption("This latent never fires on the run's tokens (dead).")
        return
    rows = tuple(int(r) for r in st_.top_rows[f][: (8 if full else EXAMPLES_PER_CARD)] if r >= 0)
    scale = float(st_.max_activation[f])
    st.markdown(figs.examples_html(examples(key, f, rows), scale), unsafe_allow_html=True)
    if full:
        quantiles = st_.quantile_examples(f, n_intervals=4, per_interval=2)
        if quantiles:
            with st.expander("Examples across the activation range (random firing tokens by quantile)"):
                for interval in dict.fromkeys(q[2] for q in quantiles):
                    picks = tuple(r for r, _, name_ in quantiles if name_ == interval)
                    st.caption(interval)
                    st.markdown(figs.examples_html(examples(key, f, picks), scale), unsafe_allow_html=True)
    height = 240 if full else 180
    chart_key = f"{'full' if full else 'card'}_{name}_{key}_{f}"
    histogram = figs.activation_histogram(st_, f, height=height)
    if full:
        show_figure(histogram, name=f"sae-{key}-feature-{f}-histogram", spec=figure_spec(None, sae=key, feature=int(f)),
                    key=f"hist_{chart_key}", width="stretch")
    else:
        st.plotly_chart(histogram, width="stretch", key=f"hist_{chart_key}")
    for column, association in st_.labels.items():
        if association.kind == "categorical":
            tops = association.top_values(f, n=2)
            if tops:
                st.caption(f"{column}: " + "; ".join(
                    f"**{t['value']}** {t['rate']:.0%} of its tokens (×{t['lift']:.1f} the base rate)" for t in tops))
            if full:
                show_figure(figs.label_association_figure(association, f, height=height),
                            name=f"sae-{key}-feature-{f}-{column}", spec=figure_spec(None, sae=key, feature=int(f)),
                            key=f"assoc_{column}_{chart_key}", width="stretch")
        else:
            r = association.correlation[f]
            st.caption(f"{column}: Pearson r = {'undefined' if np.isnan(r) else f'{r:+.2f}'}")
    effects = logit_effects(key)
    if effects is not None:
        entry = effects.for_feature(f)
        n = 10 if full else 5
        st.markdown("Promotes " + figs.token_chips_html(entry["promoted"][:n]), unsafe_allow_html=True)
        st.markdown("Suppresses " + figs.token_chips_html(entry["suppressed"][:n], positive=False),
                    unsafe_allow_html=True)
        if full:
            show_figure(figs.logit_effects_figure(entry["promoted"][:n], entry["suppressed"][:n], feature=f),
                        name=f"sae-{key}-feature-{f}-logits", spec=figure_spec(None, sae=key, feature=int(f)),
                        key=f"logits_{chart_key}", width="stretch")
