"""Compare two models: layer-by-layer similarity heatmaps with linked maps."""

import numpy as np
import streamlit as st

from core.analysis.similarity import METRIC_DEFAULTS, METRIC_NAMES, SIMILARITY_METRICS
from core.errors import LayerscopeError
from core.export import figure_spec
from core.figures.similarity import relative_depth_curves, similarity_heatmap
from dashboard import analysis, compare_services, services, widgets
from dashboard.figure_export import show_figure
from dashboard.geometry_services import extract_twin, is_untrained

widgets.page_header(
    "Compare",
    "Two models on the same inputs, layer by layer: CKA, mutual k-NN, SVCCA, RSA. Click a cell to see both "
    "layers' maps side by side; a box or lasso selection in one map highlights the same inputs in the other.",
)

runs = services.list_runs()
if not runs:
    widgets.empty_state("No runs yet: extract activations first.", page="views/workspace.py", label="Go to Workspace")
    st.stop()

by_key = {r["key"]: r for r in runs}
with st.sidebar:
    st.markdown("##### Models")
    run_a = widgets.run_picker(label="Model A")
    partners = [r for r in runs if r["dataset"]["fingerprint"] == run_a["dataset"]["fingerprint"]
                and r["n_inputs"] == run_a["n_inputs"]]
    partner_keys = [r["key"] for r in partners]
    default_b = next((r["key"] for r in partners if r["key"] != run_a["key"]), run_a["key"])
    key_b = st.selectbox("Model B", partner_keys, index=partner_keys.index(default_b),
                         format_func=lambda k: services.describe_run(by_key[k]),
                         help="Runs on the same inputs in the same order (same dataset fingerprint).")
    run_b = by_key[key_b]
    st.markdown("##### Metric")
    metric = st.selectbox("Similarity", list(SIMILARITY_METRICS), format_func=lambda m: METRIC_NAMES[m],
                          help="\n\n".join(f"**{METRIC_NAMES[m]}**: {about}"
                                           for m, (_, about) in SIMILARITY_METRICS.items()))
    about = SIMILARITY_METRICS[metric][1]
    st.caption(about[:1].upper() + about[1:])
    fit_colours = st.checkbox("Fit colours to the values", key="compare_fit_colours",
                              help="Off: the colour scale spans the metric's whole range, comparable across model "
                              "pairs. On: it spans this matrix's values, for contrast when they are all small.")
    params = {}
    if "k" in METRIC_DEFAULTS[metric]:
        params["k"] = int(st.number_input("k (neighbours)", 1, 200, 10))
        params["clip_quantile"] = 0.95 if st.checkbox(
            "Clip outliers (platonic-rep)", help="Clamp values at the mean 0.95 quantile of |x|, as Huh et al.'s "
            "code does; off by default.") else None
    if "variance" in METRIC_DEFAULTS[metric]:
        params["variance"] = st.slider("Variance kept", 0.80, 1.0, 0.99, 0.01)
    if "bandwidth" in METRIC_DEFAULTS[metric]:
        params["bandwidth"] = st.slider("Bandwidth (x median distance)", 0.1, 4.0, 1.0, 0.1)

if run_b["key"] == run_a["key"] and len(partners) == 1:
    st.info("Only one run uses these inputs. Add a comparison partner:", icon=":material/info:")
    if not is_untrained(run_a) and run_a["dataset"]["modality"] == "text":
        if st.button("Extract the untrained twin of model A", type="primary", icon=":material/shuffle:"):
            with widgets.user_errors():
                bar = st.progress(0.0, text="Extracting the re-initialised twin...")
                extract_twin(run_a, progress=lambda d, t, m: bar.progress(d / max(t, 1), text=f"batch {d}/{t}"))
                st.rerun()
    if st.button("Train two digits MLPs (seeds 0 and 1) and extract them", icon=":material/school:"):
        with widgets.user_errors(), st.spinner("Training and extracting (seconds)..."):
            compare_services.make_digits_pair()
            st.rerun()

if run_a["dataset"]["modality"] == "text":
    with st.expander(f"Extract another model on these {run_a['n_inputs']:,} inputs",
                     expanded=run_b["key"] == run_a["key"] and len(partners) == 1, icon=":material/add:"):
        source = st.radio("Model", ["Bundled", "Folder or hub id"], horizontal=True, key="partner_source",
                          label_visibility="collapsed")
        if source == "Bundled":
            others = [m for m in compare_services.TEXT_MODELS if m != run_a["model"]["name"]]
            partner = st.selectbox("Bundled model", compare_services.TEXT_MODELS, key="partner_bundled",
                                   index=compare_services.TEXT_MODELS.index(others[0]) if others else 0)
        else:
            partner = st.text_input("Model folder or hub id", key="partner_typed",
                                    placeholder="/path/to/hf-model or org/name").strip()
        if st.button(f"Extract {partner or '...'} on {run_a['dataset']['name']} ({run_a['pooling']} pooling)",
                     icon=":material/download:", key="partner_extract", disabled=not partner):
            slot = st.empty()
            with widgets.user_errors():
                try:
                    bar = slot.progress(0.0, text=f"Extracting {partner}...")
                    compare_services.extract_partner(
                        run_a, partner, progress=lambda d, t, m: bar.progress(d / max(t, 1), text=f"batch {d}/{t}")
                    )
                finally:
                    slot.empty()  # no progress bar left behind, also after an error
                st.rerun()

with widgets.user_errors():
    acts_a, acts_b = services.open_run(run_a["key"]), services.open_run(run_b["key"])
    result = compare_services.similarity(run_a["key"], run_b["key"], metric, tuple(sorted(params.items())))

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
    clicked = st.session_state.get("compare_heatmap")
    points = clicked.selection.points if clicked and clicked.get("selection") else []
    if points:
        picked = points[0].get("customdata")
        if picked is not None and len(np.ravel(picked)) >= 2:  # a cell marker or a best-match marker
            layer_a, layer_b = (str(v) for v in np.ravel(picked)[:2])
        else:
            layer_a = result.layers_a[int(round(points[0]["y"]))]
            layer_b = result.layers_b[int(round(points[0]["x"]))]
        st.session_state["compare_cell"] = (layer_a, layer_b)
    fig = similarity_heatmap(result, title=title, selected=st.session_state.get("compare_cell"),
                             fit_colours=fit_colours)
    spec = figure_spec("similarity_heatmap", [acts_a.key, acts_b.key], metric=metric, metric_params=params, title=title,
                       fit_colours=fit_colours)
    show_figure(fig, name=f"similarity-{metric}-{acts_a.model_name}-{acts_b.model_name}", spec=spec,
                data=result.to_frame(), key="compare_heatmap", width="stretch", on_select="rerun",
                selection_mode=("points",))
    cell = st.session_state.get("compare_cell")
    if not cell or cell[0] not in acts_a.layer_names or cell[1] not in acts_b.layer_names:
        cell = best[:2] if best else (acts_a.layer_names[-1], acts_b.layer_names[-1])

    st.markdown(f"#### Linked maps: A · `{cell[0]}`  and  B · `{cell[1]}`")
    color_by = st.selectbox("Colour both maps by", ["(none)", *acts_a.label_columns],
                            index=1 if acts_a.label_columns else 0)
    color_by = None if color_by == "(none)" else color_by
    selected = st.session_state.get("compare_selection")
    highlight = None
    if selected is not None and len(selected):
        highlight = np.zeros(acts_a.n_inputs, bool)
        highlight[np.asarray(selected, int)] = True
        st.caption(f"{len(selected)} inputs selected; they are outlined in both maps.")
    left, right = st.columns(2)
    for column, acts, layer, side in ((left, acts_a, cell[0], "A"), (right, acts_b, cell[1], "B")):
        with column:
            maps = analysis.aligned_maps(acts.key, "pca")
            labels = acts.table[acts.label_columns] if acts.label_columns else None
            title = f"{side}: {acts.model_name} · {layer}"
            fig = analysis.layer_figure(maps, acts.layer_names, layer, acts.texts, labels, color_by, None, highlight,
                                        None, None, "PC", title)
            fig.update_layout(dragmode="lasso", height=480)
            spec = figure_spec("layer_map", [acts.key], layer=layer, method="pca", color_by=color_by, title=title,
                               highlight_rows=list(selected or []), max_points=None,
                               layout={"dragmode": "lasso", "height": 480})
            event = show_figure(fig, name=f"map-{side}-{acts.model_name}-{layer}", spec=spec,
                                key=f"compare_map_{side}", width="stretch", on_select="rerun",
                                selection_mode=("box", "lasso"))
            chosen = event.selection.points if event and event.selection else []
            if chosen:
                rows = sorted({int(np.ravel(p["customdata"])[0]) for p in chosen})
                if rows != (selected or []):
                    st.session_state["compare_selection"] = rows
                    st.rerun()
    if selected and st.button("Clear selection"):
        st.session_state.pop("compare_selection", None)
        st.rerun()

    st.markdown("#### Per-layer curves on a relative-depth axis")
    if acts_a.label_columns:
        column = st.selectbox("Probe label", acts_a.label_columns)
        try:
            curves = {}
            for acts, side in ((acts_a, "A"), (acts_b, "B")):
                probe = analysis.probe_result(acts.key, column)
                curves[f"{side}: {acts.model_name}"] = (list(probe.layer_names), np.asarray(probe.mean))
            score = "accuracy" if probe.metric == "accuracy" else "R²"
            title, y_title = f"Linear probe {score} for {column}, both models", f"held-out probe {score}"
            spec = figure_spec("probe_depth_curves", [acts_a.key, acts_b.key], column=column, names=list(curves),
                               title=title, y_title=y_title)
            show_figure(relative_depth_curves(curves, y_title=y_title, title=title), name=f"probe-depth-{column}",
                        spec=spec, key="compare_probe_curves", width="stretch")
        except LayerscopeError as err:
            st.error(f"{column}: {err}", icon=":material/error:")
