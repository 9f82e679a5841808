"""Feature gallery: the latents of one SAE as cards, sortable and searchable, with a map of their directions."""

import numpy as np
import streamlit as st

from core.export import figure_spec
from core.figures.sae import density_histogram, feature_map
from dashboard import jobs, widgets
from dashboard import sae_services as ss
from dashboard.figure_export import show_figure

SORTS = {"density": "Firing density", "max_activation": "Max activation", "label_association": "Label association"}
COLUMNS = 3
OPEN = "gallery_open"  # session state (and widget key): the latent whose full card is shown
OPEN_FOR = "gallery_open_sae"  # session state: the SAE that OPEN refers to


def open_card(feature: int) -> None:
    st.session_state[OPEN] = feature

widgets.page_header(
    "Feature gallery",
    "What each SAE latent responds to: its strongest tokens in context (colour = activation), how its "
    "activations are spread, which labels it fires on and, for a causal LM, which tokens it promotes.",
)

saes = ss.list_saes()
if not saes:
    widgets.empty_state("No SAEs yet: train one (or load an SAELens folder) on the Train SAE page.",
                        page="views/sae_train.py", label="Train an SAE")
    st.stop()
keys = [m["key"] for m in saes]
by_key = {m["key"]: m for m in saes}
current = st.session_state.get(ss.SAE_KEY)
with st.sidebar:
    st.markdown("##### SAE")
    key = st.selectbox("SAE", keys, index=keys.index(current) if current in keys else 0,
                       format_func=lambda k: ss.describe(by_key[k]), key="gallery_sae")
st.session_state[ss.SAE_KEY] = key

opened = False
with widgets.user_errors():
    entry = ss.open_sae(key)
    ss.run_of(entry)  # its run must still be in the workspace
    opened = True
if not opened:
    st.stop()

if not ss.stats_ready(key):
    st.caption(f"{ss.describe(entry.meta)}: one pass over the run's tokens collects each latent's top examples, "
               "activation histogram, density and label association. The result is stored in the workspace.")
    if not st.button("Compute feature statistics", type="primary", icon=":material/play_arrow:"):
        st.stop()
    with widgets.user_errors():
        bar = st.progress(0.0, text="Reading the run's tokens...")
        ss.compute_stats(key, progress=lambda d, t, m: bar.progress(d / max(t, 1), text=m))
        bar.empty()
    if not ss.stats_ready(key):
        st.stop()

stats = ss.stats(key)
labels = list(stats.labels)
with st.sidebar:
    st.markdown("##### Cards")
    sort = st.radio("Sort by", list(SORTS), format_func=SORTS.get, key="gallery_sort",
                    help="Label association: mutual information (bits) between firing and a categorical label, "
                    "|Pearson r| for a numeric one.")
    column = None
    if sort == "label_association":
        if labels:
            column = st.selectbox("Label", labels, key="gallery_label")
        else:
            st.caption("This run has no label columns; sorting by density.")
            sort = "density"
    query = st.text_input("Search a token or text", placeholder="e.g. rain", key="gallery_search").strip()
    hide_dead = st.toggle("Hide dead latents", value=True, key="gallery_hide_dead")
    per_page = st.select_slider("Cards per page", [3, 6, 9, 12, 24], value=6, key="gallery_per_page")

ev = entry.evaluation
c1, c2, c3, c4 = st.columns(4)
c1.metric("Latents", f"{stats.n_features:,}")
c2.metric("Dead on this run", f"{int(stats.dead.sum()):,}", help="Never active on any token of the run.")
c3.metric("Variance explained", f"{ev.fve:.3f}", help="Held out.")
c4.metric("Mean L0", f"{ev.l0:.1f}")

with widgets.user_errors():
    order = ss.search(key, query) if query else stats.order(sort, column)
    if hide_dead:
        order = order[~stats.dead[order]]
    if query:
        st.caption(f"{len(order)} latents have “{query}” among their strongest tokens (or in their examples' text).")

    method = "umap" if jobs.umap_ready() else "pca"
    coords = ss.feature_map(key, method)
    if st.session_state.get(OPEN_FOR) != key or st.session_state.get(OPEN) is None:
        st.session_state[OPEN] = int(order[0]) if len(order) else 0  # the first card, until one is picked
        st.session_state[OPEN_FOR] = key
    selected = int(st.session_state[OPEN])
    map_col, card_col = st.columns([3, 2], gap="medium")
    with map_col:
        hover = [f"feature {i} · {t}" for i, t in enumerate(ss.top_tokens(key, 4))]
        fig = feature_map(coords, stats, method=method.upper(), selected=selected, hover=hover)
        event = show_figure(fig, name=f"sae-feature-map-{key}", spec=figure_spec(None, sae=key, method=method),
                            key="gallery_map", width="stretch", on_select="rerun", selection_mode=("points",))
        points = event.selection.points if event and event.selection else []
        if points:
            clicked = int(np.ravel(points[0]["customdata"])[0])
            if clicked != selected:
                st.session_state[OPEN] = clicked
                st.rerun()
        if method == "pca":
            st.caption("PCA of the decoder directions; UMAP replaces it once UMAP has warmed up in the background.")
        selected = int(st.number_input("Open feature #", min_value=0, max_value=stats.n_features - 1, key=OPEN,
                                       help="Or click a point on the map, or Open on a card."))
    with card_col, st.container(border=True):
        ss.render_feature_card(key, selected, full=True)

    st.markdown("##### Features")
    pages = max(1, -(-len(order) // per_page))
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key="gallery_page") if pages > 1 else 1
    shown = order[(page - 1) * per_page : page * per_page]
    if not len(shown):
        st.info("No latents match.", icon=":material/info:")
    for start in range(0, len(shown), COLUMNS):
        cols = st.columns(COLUMNS, gap="small")
        for col, feature in zip(cols, shown[start : start + COLUMNS]):
            with col, st.container(border=True):
                ss.render_feature_card(key, int(feature))
                st.button("Open", key=f"open_{feature}", icon=":material/open_in_full:", on_click=open_card,
                          args=(int(feature),))
    with st.expander("Density of all latents"):
        show_figure(density_histogram(stats), name=f"sae-density-{key}", spec=figure_spec(None, sae=key),
                    key="gallery_density", width="stretch")
