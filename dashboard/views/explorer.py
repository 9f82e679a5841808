"""Layer explorer: an aligned 2-D map of each layer, coloured by a label, and a table of the inputs shown."""

import numpy as np
import pandas as pd
import streamlit as st

from core.recipes.maps import METHOD_OF_AXIS, describe_filter, drawn_rows, label_mask
from dashboard import cached, layer_maps, state, widgets
from dashboard.figure_export import build, show_built

widgets.page_header(
    "Layer explorer",
    "How the inputs are organised at each layer. Maps are aligned across layers, so points keep their place "
    "when the layer changes.",
)

acts = widgets.current_run()

layers = acts.layer_names
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
    label_filter, label_ranges = {}, {}
    if acts.label_columns:
        st.markdown("##### Filter by label")
        label_filter, label_ranges = layer_maps.label_filters(acts)

shown = state.explorer_layer()
layer = st.select_slider("Layer", options=layers, value=shown if shown in layers else layers[0],
                         format_func=lambda name: widgets.layer_label(name, layers))
state.set_explorer_layer(layer)

rows = cached.subsample(acts.n_inputs)
if len(rows) < acts.n_inputs:
    st.caption(f"Drawing a random subsample of {len(rows):,} of {acts.n_inputs:,} inputs (seed 0); "
               "neighbours and trustworthiness use all inputs.")

with widgets.user_errors():
    shown_maps = layer_maps.maps_for(acts, method, layer)
    if shown_maps.umap_pending:
        layer_maps.umap_progress(acts.key, len(layers))
    elif shown_maps.note:
        st.info(shown_maps.note, icon=":material/hourglass_top:")
    maps, axis_name = shown_maps.maps, shown_maps.axis_name
    filters = {"label_filter": label_filter or None, "label_ranges": label_ranges or None}
    filtered = describe_filter(label_filter, label_ranges)
    if not label_mask(acts.table[list(acts.label_columns)], label_filter, label_ranges).any():
        widgets.empty_state(f"No input has {filtered}. Choose other values under Filter by label in the sidebar.")
        st.stop()
    kept = np.zeros(acts.n_inputs, bool)
    kept[drawn_rows(acts, **filters)] = True
    if search:
        matches = np.array([search.lower() in t.lower() for t in texts]) & kept
        st.caption(f"{int(matches.sum())} inputs shown contain “{search}”.")

    map_col, side_col = st.columns([3, 1], gap="medium")
    with side_col:
        trust = cached.trustworthiness(acts.key, layer, maps[layers.index(layer)], axis_name)
        st.metric("Trustworthiness (k=10)", f"{trust:.3f}",
                  help="sklearn.manifold.trustworthiness between this layer's full-dimensional vectors and the "
                  "2-D map of all inputs: 1 means the map's neighbourhoods exist in the full space.")
        st.caption(f"{acts.n_inputs:,} inputs · d = {acts.dim(layer)} · {acts.pooling} pooling")

    selected = st.session_state.get(state.Explorer.SELECTED)
    neighbours = distances = None
    if selected is not None and selected < acts.n_inputs:
        neighbours, distances = cached.neighbours(acts.key, layer, selected, k)
    region = layer_maps.region(acts.key)
    in_region = None if region is None or animate else [r for r in region if kept[r]]

    with map_col:
        title = f"{acts.model_name} · {layer} · {axis_name} map of {acts.dataset_name}"
        if animate:
            title = f"{acts.model_name} · {axis_name} maps across layers"
            built = build("animated_layer_map", [acts.key], method=METHOD_OF_AXIS[axis_name], color_by=color_by,
                          title=title, layer=layer, **filters)
            show_built(built, key=state.Explorer.ANIMATION, width="stretch")
        else:
            built = build("layer_map", [acts.key], layer=layer, method=METHOD_OF_AXIS[axis_name], color_by=color_by,
                          title=title, search=search, selected=selected, k=k, region_rows=region,
                          layout={"dragmode": "select"}, **filters)
            event = show_built(built, key=state.Explorer.MAP, width="stretch", on_select="rerun",
                               selection_mode=("points", "box", "lasso"))
            clicked, boxed = layer_maps.picked_rows(event)
            if boxed is not None and boxed != region:
                layer_maps.set_region(acts.key, boxed)
                st.rerun()
            if clicked is not None and clicked != selected:
                st.session_state[state.Explorer.SELECTED] = clicked
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
                st.session_state.pop(state.Explorer.SELECTED, None)
                st.rerun()

    st.markdown("##### Inputs")
    listed = np.asarray(in_region if in_region is not None else np.flatnonzero(kept), dtype=int)
    if in_region is not None:
        st.caption(f"{len(listed):,} inputs picked by the box or lasso on the map"
                   + (f" ({len(region) - len(listed):,} more are filtered out)" if len(listed) < len(region) else "")
                   + ". Show all inputs to list every input shown again.")
    elif len(listed) > layer_maps.TABLE_MAX_ROWS:
        st.caption(f"The first {layer_maps.TABLE_MAX_ROWS:,} of {len(listed):,} inputs shown. Drag a box on the map "
                   "(or pick the lasso in its toolbar) to list the inputs in a region.")
    else:
        st.caption(f"All {len(listed):,} inputs shown. Drag a box on the map (or pick the lasso in its toolbar) "
                   "to list the inputs in a region.")
    st.dataframe(layer_maps.inputs_table(acts, listed), hide_index=True, width="stretch",
                 height=min(38 + 35 * min(len(listed), layer_maps.TABLE_MAX_ROWS), 420),
                 column_config={"row": st.column_config.NumberColumn("row", help="the input's index in the run")})
    if in_region is not None and st.button("Show all inputs"):
        layer_maps.set_region(acts.key, None)
        st.rerun()
