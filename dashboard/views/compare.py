"""Compare two models: layer-by-layer similarity heatmaps with linked maps."""

import numpy as np
import streamlit as st

from core.analysis.similarity import metric_choices
from core.errors import LayerscopeError
from core.runs import is_untrained
from dashboard import actions, cached, planning, state, widgets
from dashboard.figure_export import build, show_built

widgets.page_header(
    "Compare",
    "Two models on the same inputs, layer by layer: CKA, mutual k-NN, SVCCA, RSA. Click a cell to see both "
    "layers' maps side by side; a box or lasso selection in one map highlights the same inputs in the other.",
)

runs = widgets.workspace_runs()

by_key = {r["key"]: r for r in runs}
with st.sidebar:
    st.markdown("##### Models")
    run_a = widgets.run_picker(label="Model A")
    partners = planning.same_inputs(run_a, runs)
    partner_keys = [r["key"] for r in partners]
    key_b = st.selectbox("Model B", partner_keys, index=partner_keys.index(planning.default_partner(run_a, partners)),
                         format_func=lambda k: widgets.describe_run(by_key[k]),
                         help="Runs on the same inputs in the same order (same dataset fingerprint).")
    run_b = by_key[key_b]
    st.markdown("##### Metric")
    metrics = {m.name: m for m in metric_choices()}
    metric = st.selectbox("Similarity", list(metrics), format_func=lambda name: metrics[name].short_name,
                          help="\n\n".join(f"**{m.short_name}**: {m.description}" for m in metrics.values()))
    defaults, about = metrics[metric].defaults, metrics[metric].description
    st.caption(about[:1].upper() + about[1:])
    fit_colours = st.checkbox("Fit colours to the values", key=state.Compare.FIT_COLOURS,
                              help="Off: the colour scale spans the metric's whole range, comparable across model "
                              "pairs. On: it spans this matrix's values, for contrast when they are all small.")
    params = {}
    if "k" in defaults:
        params["k"] = int(st.number_input("k (neighbours)", 1, 200, 10))
        params["clip_quantile"] = 0.95 if st.checkbox(
            "Clip outliers (platonic-rep)", help="Clamp values at the mean 0.95 quantile of |x|, as Huh et al.'s "
            "code does; off by default.") else None
    if "variance" in defaults:
        params["variance"] = st.slider("Variance kept", 0.80, 1.0, 0.99, 0.01)
    if "bandwidth" in defaults:
        params["bandwidth"] = st.slider("Bandwidth (x median distance)", 0.1, 4.0, 1.0, 0.1)

if run_b["key"] == run_a["key"] and len(partners) == 1:
    st.info("Only one run uses these inputs. Add a comparison partner:", icon=":material/info:")
    if not is_untrained(run_a) and run_a["dataset"]["modality"] == "text":
        if st.button("Extract the untrained twin of model A", type="primary", icon=":material/shuffle:"):
            with widgets.user_errors():
                bar = widgets.ProgressBar("Extracting the re-initialised twin...",
                                          describe=lambda d, t, _: f"batch {d}/{t}")
                actions.extract_twin(run_a, progress=bar)
                st.rerun()
    if st.button("Train two digits MLPs (seeds 0 and 1) and extract them", icon=":material/school:"):
        with widgets.user_errors(), st.spinner("Training and extracting (seconds)..."):
            actions.make_digits_pair()
            st.rerun()

if run_a["dataset"]["modality"] == "text":
    with st.expander(f"Extract another model on these {run_a['n_inputs']:,} inputs",
                     expanded=run_b["key"] == run_a["key"] and len(partners) == 1, icon=":material/add:"):
        source = st.radio("Model", ["Bundled", "Folder or hub id"], horizontal=True, key=state.Compare.PARTNER_SOURCE,
                          label_visibility="collapsed")
        if source == "Bundled":
            partner = st.selectbox("Bundled model", actions.TEXT_MODELS, key=state.Compare.PARTNER_BUNDLED,
                                   index=planning.partner_model(run_a, actions.TEXT_MODELS))
        else:
            partner = st.text_input("Model folder or hub id", key=state.Compare.PARTNER_TYPED,
                                    placeholder="/path/to/hf-model or org/name").strip()
        if st.button(f"Extract {partner or '...'} on {run_a['dataset']['name']} ({run_a['pooling']} pooling)",
                     icon=":material/download:", key=state.Compare.PARTNER_EXTRACT, disabled=not partner):
            with widgets.user_errors():
                bar = widgets.ProgressBar(f"Extracting {partner}...", describe=lambda d, t, _: f"batch {d}/{t}")
                try:
                    actions.extract_partner(run_a, partner, progress=bar)
                finally:
                    bar.empty()  # no progress bar left behind, also after an error
                st.rerun()

with widgets.user_errors():
    acts_a, acts_b = cached.open_run(run_a["key"]), cached.open_run(run_b["key"])
    result = cached.similarity(run_a["key"], run_b["key"], metric, cached.params_key(params))

    best = result.best_pair()
    c1, c2, c3 = st.columns([1.1, 2.3, 0.6])  # the best pair names two layers: give it the room
    c1.metric("Mean along the relative-depth diagonal", f"{result.diagonal_on_relative_depth():.3f}")
    c2.metric("Best pair", f"{best[0]} ↔ {best[1]}" if best else "none")
    c3.metric("Its value", f"{best[2]:.3f}" if best else "NaN")
    if run_a["key"] == run_b["key"]:
        st.caption("Model A compared with itself: the diagonal is 1 for CKA by construction.")
    if result.reasons:
        st.warning("Some cells are undefined: " + "; ".join(r for _, _, r in result.reasons[:3]),
                   icon=":material/warning:")

    title = f"{result.label}: {acts_a.model_name} vs {acts_b.model_name} on {acts_a.dataset_name}"
    # the click that caused this run is in the chart's state already: read it before drawing,
    # so the clicked cell is outlined in this run, not the next
    clicked = st.session_state.get(state.Compare.HEATMAP)
    points = clicked.selection.points if clicked and clicked.get("selection") else []
    if points:
        picked = points[0].get("customdata")
        if picked is not None and len(np.ravel(picked)) >= 2:  # a cell marker or a best-match marker
            layer_a, layer_b = (str(v) for v in np.ravel(picked)[:2])
        else:
            layer_a = result.layers_a[int(round(points[0]["y"]))]
            layer_b = result.layers_b[int(round(points[0]["x"]))]
        st.session_state[state.Compare.CELL] = (layer_a, layer_b)
    heatmap = build("similarity_heatmap", [acts_a.key, acts_b.key], metric=metric, metric_params=params, title=title,
                    fit_colours=fit_colours, selected=st.session_state.get(state.Compare.CELL))
    show_built(heatmap, key=state.Compare.HEATMAP, width="stretch", on_select="rerun", selection_mode=("points",))
    cell = st.session_state.get(state.Compare.CELL)
    if not cell or cell[0] not in acts_a.layer_names or cell[1] not in acts_b.layer_names:
        cell = best[:2] if best else (acts_a.layer_names[-1], acts_b.layer_names[-1])

    st.markdown(f"#### Linked maps: A · `{cell[0]}`  and  B · `{cell[1]}`")
    color_by = st.selectbox("Colour both maps by", ["(none)", *acts_a.label_columns],
                            index=1 if acts_a.label_columns else 0)
    color_by = None if color_by == "(none)" else color_by
    selected = st.session_state.get(state.Compare.SELECTION)
    if selected is not None and len(selected):
        st.caption(f"{len(selected)} inputs selected; they are outlined in both maps.")
    left, right = st.columns(2)
    for column, acts, layer, side in ((left, acts_a, cell[0], "A"), (right, acts_b, cell[1], "B")):
        with column:
            built = build("layer_map", [acts.key], layer=layer, method="pca", color_by=color_by,
                          title=f"{side}: {acts.model_name} · {layer}", highlight_rows=list(selected or []),
                          max_points=None, layout={"dragmode": "lasso", "height": 480})
            event = show_built(built, name=f"map-{side}-{acts.model_name}-{layer}", key=state.Compare.map(side),
                               width="stretch", on_select="rerun", selection_mode=("box", "lasso"))
            chosen = event.selection.points if event and event.selection else []
            if chosen:
                rows = sorted({int(np.ravel(p["customdata"])[0]) for p in chosen})
                if rows != (selected or []):
                    st.session_state[state.Compare.SELECTION] = rows
                    st.rerun()
    if selected and st.button("Clear selection"):
        st.session_state.pop(state.Compare.SELECTION, None)
        st.rerun()

    st.markdown("#### Per-layer curves on a relative-depth axis")
    if acts_a.label_columns:
        column = st.selectbox("Probe label", acts_a.label_columns)
        try:
            names = [f"A: {acts_a.model_name}", f"B: {acts_b.model_name}"]
            show_built(build("probe_depth_curves", [acts_a.key, acts_b.key], column=column, names=names),
                       key=state.Compare.PROBE_CURVES, width="stretch")
        except LayerscopeError as err:
            widgets.show_error(err, about=column)
