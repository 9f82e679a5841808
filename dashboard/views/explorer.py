"""Layer explorer: an aligned 2-D map of each layer, coloured by a label."""

import numpy as np
import pandas as pd
import streamlit as st

from core.export import figure_spec
from dashboard import analysis, jobs, widgets
from dashboard.figure_export import show_figure

METHOD_OF_AXIS = {"PC": "pca", "UMAP": "umap", "t-SNE": "tsne"}  # what the map shows (UMAP falls back to PCA)

widgets.page_header(
    "Layer explorer",
    "How the inputs are organised at each layer. Maps are aligned across layers, so points keep their place "
    "when the layer changes.",
)

acts = widgets.current_run()

layers = acts.layer_names
labels = acts.table[acts.label_columns] if acts.label_columns else None
texts = acts.texts

with st.sidebar:
    st.markdown("##### Map")
    method = st.radio(
        "Projection", ["PCA", "UMAP", "t-SNE"], horizontal=True,
        help="PCA is instant and aligned across layers by Procrustes rotation. UMAP (AlignedUMAP across "
        "layers) is computed in the background. t-SNE is per layer, not aligned.",
    )
    color_by = st.selectbox("Colour by", ["(none)", *acts.label_columns],
                            index=1 if acts.label_columns else 0)
    color_by = None if color_by == "(none)" else color_by
    search = st.text_input("Highlight inputs containing", placeholder="e.g. rain").strip()
    k = st.slider("Nearest neighbours to list", 3, 30, 10)
    animate = st.toggle("Animate through layers", help="Play the aligned maps layer after layer.")

layer_index = layers.index(st.session_state[widgets.LAYER_KEY]) if st.session_state.get(widgets.LAYER_KEY) in layers else 0
layer = st.select_slider("Layer", options=layers, value=layers[layer_index],
                         format_func=lambda name: widgets.layer_label(name, layers))
st.session_state[widgets.LAYER_KEY] = layer

rows = analysis.subsample(acts.n_inputs)
if len(rows) < acts.n_inputs:
    st.caption(f"Drawing a random subsample of {len(rows):,} of {acts.n_inputs:,} inputs (seed 0); "
               "neighbours and trustworthiness use all inputs.")

with widgets.user_errors():
    maps, axis_name, note = analysis.maps_for(acts, method, layer)
    if note:
        st.info(note, icon=":material/hourglass_top:")
    highlight = None
    if search:
        highlight = np.array([search.lower() in t.lower() for t in texts])
        st.caption(f"{int(highlight.sum())} inputs contain “{search}”.")

    map_col, side_col = st.columns([3, 1], gap="medium")
    with side_col:
        trust = analysis.trustworthiness(acts, layer, maps, axis_name)
        st.metric("Trustworthiness (k=10)", f"{trust:.3f}",
                  help="sklearn.manifold.trustworthiness between this layer's full-dimensional vectors and the "
                  "2-D map: 1 means the map's neighbourhoods exist in the full space.")
        st.caption(f"{acts.n_inputs:,} inputs · d = {acts.dim(layer)} · {acts.pooling} pooling")

    selected = st.session_state.get("explorer_selected")
    neighbours = distances = None
    if selected is not None and selected < acts.n_inputs:
        neighbours, distances = analysis.neighbours(acts.key, layer, selected, k)

    with map_col:
        title = f"{acts.model_name} · {layer} · {axis_name} map of {acts.dataset_name}"
        if animate:
            title = f"{acts.model_name} · {axis_name} maps across layers"
            fig = analysis.animated_map(maps, layers, texts, labels, color_by, rows, axis_name, title)
            spec = figure_spec("animated_layer_map", [acts.key], method=METHOD_OF_AXIS[axis_name], color_by=color_by,
                               title=title)
            show_figure(fig, name=f"maps-animated-{acts.model_name}", spec=spec, key="explorer_animation",
                        width="stretch")
        else:
            fig = analysis.layer_figure(maps, layers, layer, texts, labels, color_by, rows, highlight,
                                        selected, neighbours, axis_name, title)
            spec = figure_spec("layer_map", [acts.key], layer=layer, method=METHOD_OF_AXIS[axis_name],
                               color_by=color_by, title=title, search=search, selected=selected, k=k)
            event = show_figure(fig, name=f"map-{acts.model_name}-{layer}", spec=spec, key="explorer_map",
                                width="stretch", on_select="rerun", selection_mode=("points",))
            points = event.selection.points if event and event.selection else []
            if points:
                clicked = int(np.ravel(points[0]["customdata"])[0])
                if clicked != selected:
                    st.session_state["explorer_selected"] = clicked
                    st.rerun()

    with side_col:
        st.markdown("##### Nearest neighbours")
        if neighbours is None:
            st.caption("Click a point on the map to list its nearest neighbours in this layer's full space.")
        else:
            st.markdown(f"**{texts[selected]}**")
            if acts.modality == "image":
                shown = [selected, *list(neighbours)[:8]]
                st.image([acts.image(i) for i in shown], caption=[texts[i] for i in shown], width=72)
            table = pd.DataFrame({"input": [texts[i] for i in neighbours], "cosine distance": np.round(distances, 4)})
            if color_by:
                table.insert(1, color_by, [acts.table[color_by].iloc[i] for i in neighbours])
            st.dataframe(table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 420))
            if st.button("Clear selection"):
                st.session_state.pop("explorer_selected", None)
                st.rerun()

if method == "UMAP" and not jobs.umap_ready():
    @st.fragment(run_every=3)
    def wait_for_umap():
        if jobs.umap_ready() or analysis.umap_job_done(acts):
            st.rerun(scope="app")

    wait_for_umap()
