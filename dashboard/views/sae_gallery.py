"""Feature gallery: the latents of one SAE as cards, sortable and searchable, with a map of their directions."""

import numpy as np
import streamlit as st

from core.recipes.sae import sae_runs
from dashboard import actions, cached_sae, demo_status, jobs, state, widgets
from dashboard.feature_card import render_feature_card
from dashboard.figure_export import build, show_built
from dashboard.live_progress import LiveProgress, stopped

SORTS = {"density": "Firing density", "max_activation": "Max activation", "label_association": "Label association"}
COLUMNS = 3
KEYS = state.Gallery  # this page's widget keys


def open_card(feature: int) -> None:
    st.session_state[KEYS.OPEN] = feature

widgets.page_header(
    "Feature gallery",
    "What each SAE latent responds to: its strongest tokens in context (colour = activation), how its "
    "activations are spread, which labels it fires on and, for a causal LM, which tokens it promotes.",
)

saes = cached_sae.list_saes()
if not saes and demo_status.waiting_for(("sae",), "The feature gallery"):
    st.stop()
if not saes:
    widgets.empty_state("No SAEs yet: train one (or load an SAELens folder) on the Train SAE page.",
                        page="views/sae_train.py", label="Train an SAE")
    st.stop()
keys = [m["key"] for m in saes]
by_key = {m["key"]: m for m in saes}
current = state.sae_key()
with st.sidebar:
    st.markdown("##### SAE")
    key = st.selectbox("SAE", keys, index=keys.index(current) if current in keys else 0,
                       format_func=lambda k: cached_sae.describe(by_key[k]), key=KEYS.SAE)
state.set_sae_key(key)

opened = False
with widgets.user_errors():
    entry = cached_sae.open_sae(key)
    cached_sae.run_of(entry)  # its run must still be in the workspace
    opened = True
if not opened:
    st.stop()

if not cached_sae.stats_ready(key) and demo_status.waiting_for(("sae", "sae-seed1"), "The feature gallery"):
    st.stop()
if not cached_sae.stats_ready(key):
    st.caption(f"{cached_sae.describe(entry.meta)}: one pass over the run's tokens collects each latent's top "
               "examples, activation histogram, density and label association. The result is stored in the "
               "workspace.")
    if not st.button("Compute feature statistics", type="primary", icon=":material/play_arrow:"):
        st.stop()
    with widgets.user_errors():
        bar = widgets.ProgressBar("Reading the run's tokens...")
        actions.compute_stats(key, progress=bar)
        bar.empty()
    if not cached_sae.stats_ready(key):
        st.stop()

stats = cached_sae.stats(key)
labels = list(stats.labels)
with st.sidebar:
    st.markdown("##### Cards")
    sort = st.radio("Sort by", list(SORTS), format_func=SORTS.get, key=KEYS.SORT,
                    help="Label association: mutual information (bits) between firing and a categorical label, "
                    "|Pearson r| for a numeric one.")
    column = None
    if sort == "label_association":
        if labels:
            column = st.selectbox("Label", labels, key=KEYS.LABEL)
        else:
            st.caption("This run has no label columns; sorting by density.")
            sort = "density"
    query = st.text_input("Search a token or text", placeholder="e.g. rain", key=KEYS.SEARCH).strip()
    hide_dead = st.toggle("Hide dead latents", value=True, key=KEYS.HIDE_DEAD)
    per_page = st.select_slider("Cards per page", [3, 6, 9, 12, 24], value=6, key=KEYS.PER_PAGE)

ev = entry.evaluation
c1, c2, c3, c4 = st.columns(4)
c1.metric("Latents", f"{stats.n_features:,}")
n_dead = int(stats.dead.sum())
first = ", first tokens left out" if stats.params.get("exclude_first_token") else ""
dead_help = f"Latents never active on any of the run's {stats.n_tokens:,} tokens (training and held-out inputs{first})."
if entry.meta.get("source") == "trained":  # Train SAE counts on the held-out tokens only, a subset: it can count more
    dead_help += f" Train SAE counts over its {ev.n_tokens:,} held-out tokens only: {ev.n_dead:,} dead there."
c2.metric("Dead on all the run's tokens", f"{n_dead:,} ({n_dead / max(stats.n_features, 1):.1%})", help=dead_help)
c3.metric("Variance explained", f"{ev.fve:.3f}", help="Held out.")
c4.metric("Mean L0", f"{ev.l0:.1f}")

with widgets.user_errors():
    order = cached_sae.search(key, query) if query else stats.order(sort, column)
    if hide_dead:
        order = order[~stats.dead[order]]
    if query:
        st.caption(f"{len(order)} latents have “{query}” among their strongest tokens (or in their examples' text).")

    method = "umap" if jobs.umap_ready() else "pca"
    if st.session_state.get(KEYS.OPEN_FOR) != key or st.session_state.get(KEYS.OPEN) is None:
        st.session_state[KEYS.OPEN] = int(order[0]) if len(order) else 0  # the first card, until one is picked
        st.session_state[KEYS.OPEN_FOR] = key
    selected = int(st.session_state[KEYS.OPEN])
    map_col, card_col = st.columns([3, 2], gap="medium")
    with map_col:
        map_stopped, map_request = "gallery_map_stopped", ("decoder map", key, method)
        if method == "umap" and stopped(map_stopped, map_request, what="UMAP of the decoder directions",
                                        kept="Showing PCA.", retry="Map with UMAP again"):
            method = "pca"
        bar = LiveProgress("Mapping the decoder directions", key=map_stopped, request=(map_request[:2] + (method,)),
                           describe=lambda done, total, what: what)
        try:
            actions.compute_decoder_map(key, method, progress=bar)  # instant once stored: the map reads it
        finally:
            bar.empty()
        feature_map = build("sae_feature_map", sae_runs(entry), sae=key, method=method, selected=selected)
        event = show_built(feature_map, key=KEYS.MAP, width="stretch", on_select="rerun", selection_mode=("points",))
        points = event.selection.points if event and event.selection else []
        if points:
            clicked = int(np.ravel(points[0]["customdata"])[0])
            if clicked != selected:
                st.session_state[KEYS.OPEN] = clicked
                st.rerun()
        if method == "pca":
            st.caption("PCA of the decoder directions; UMAP replaces it once UMAP has warmed up in the background.")
        selected = int(st.number_input("Open feature #", min_value=0, max_value=stats.n_features - 1, key=KEYS.OPEN,
                                       help="Or click a point on the map, or Open on a card."))
    with card_col, st.container(border=True):
        render_feature_card(key, selected, full=True)

    st.markdown("##### Features")
    pages = max(1, -(-len(order) // per_page))
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=KEYS.PAGE) if pages > 1 else 1
    shown = order[(page - 1) * per_page : page * per_page]
    if not len(shown):
        st.info("No latents match.", icon=":material/info:")
    for start in range(0, len(shown), COLUMNS):
        cols = st.columns(COLUMNS, gap="small")
        for col, feature in zip(cols, shown[start : start + COLUMNS]):
            with col, st.container(border=True):
                render_feature_card(key, int(feature))
                st.button("Open", key=KEYS.open_card(int(feature)), icon=":material/open_in_full:", on_click=open_card,
                          args=(int(feature),))
    with st.expander("Density of all latents"):
        show_built(build("sae_density_histogram", sae_runs(entry), sae=key), key=KEYS.DENSITY, width="stretch")
