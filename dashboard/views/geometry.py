"""Geometry: curvature, intrinsic dimension, entropy, rank and anisotropy against depth."""

import pandas as pd
import streamlit as st

from core.analysis.geometry import CURVATURE_VARIANTS, GEOMETRY_METRICS, ID_METHODS, PER_INPUT_METRICS, RESULT_METRICS
from core.export import figure_spec
from core.figures.geometry import METRIC_TITLES, display_unit, geometry_curves, in_display_units, metric_variant
from dashboard import geometry_services as gs
from dashboard import services, widgets
from dashboard.figure_export import show_figure

REQUESTED = "geometry_requested"  # session state: set of computed requests (run keys x metric jobs)
VARIANT_NAMES = {"signed": "signed (Hosseini & Fedorenko)", "abs": "abs (Skean et al.)",
                 "twonn": "TwoNN (linear fit, dadapy)", "mle": "maximum likelihood"}

widgets.page_header(
    "Geometry",
    "How the shape of the representation changes with depth: trajectory curvature, intrinsic dimension, "
    "entropy, effective rank and anisotropy of every layer, with the spread over inputs.",
)

run = widgets.run_picker()
if run is None:
    widgets.empty_state(
        "No runs yet: extract activations on the Workspace page. Curvature and prompt entropy need a run "
        "extracted with pooling='tokens'.",
        page="views/workspace.py",
        label="Go to Workspace",
    )
    st.stop()
if widgets.open_run_or_error(run) is None:
    st.stop()
runs = services.list_runs()

with st.sidebar:
    st.markdown("##### Geometry")
    metrics = st.multiselect(
        "Metrics", list(GEOMETRY_METRICS), default=["curvature", "intrinsic_dimension"],
        format_func=lambda m: METRIC_TITLES.get(m, m.replace("_", " ").capitalize()),
        help="; ".join(f"{m}: {what}" for m, what in GEOMETRY_METRICS.items()),
    )
    curvature_variants = ["signed"]
    if "curvature" in metrics:
        curvature_variants = st.multiselect(
            "Curvature variant", list(CURVATURE_VARIANTS), default=["signed"], format_func=VARIANT_NAMES.get,
            help="signed: arccos of the step cosine, 0-180° (default). abs: arccos of its absolute value, 0-90°.",
        ) or ["signed"]
    id_methods = ["twonn"]
    if "intrinsic_dimension" in metrics:
        id_methods = st.multiselect(
            "Intrinsic-dimension estimator", list(ID_METHODS), default=["twonn"], format_func=VARIANT_NAMES.get,
            help="TwoNN (Facco et al. 2017) on the lowest 90% of the distance ratios, or its maximum-likelihood form.",
        ) or ["twonn"]
    alpha = 1.0
    if {"dataset_entropy", "prompt_entropy"} & set(metrics):
        alpha = st.number_input("Entropy order α", min_value=0.1, max_value=10.0, value=1.0, step=0.5,
                                help="Rényi order of the matrix entropy; 1 is the Shannon (von Neumann) limit.")
    st.markdown("##### Compare")
    others = [r for r in runs if r["key"] != run["key"]]
    others_by_key = {r["key"]: r for r in others}
    compare_key = st.selectbox(
        "Second run", [None, *others_by_key],
        format_func=lambda k: "(none)" if k is None else services.describe_run(others_by_key[k]),
        help="Overlay another model (any depth): the relative-depth axis lines up their layers.",
    )
    with_twin = st.toggle(
        "Trained vs untrained",
        help="Also extract the same inputs from the same architecture with re-initialised weights (seed "
        f"{gs.TWIN_SEED}): the classic control for curvature and intrinsic dimension.",
    )
    relative = st.toggle("Relative depth axis", value=True,
                         help="x = layer / last layer (0 = embeddings, 1 = last layer), so models of different "
                         "depth line up.")

if not metrics:
    widgets.empty_state("Pick one or more metrics in the sidebar.")
    st.stop()

# ----- what to compute --------------------------------------------------------------------
compared = [run] + [r for r in others if r["key"] == compare_key]
jobs = [(tuple(metrics), {"curvature_variant": curvature_variants[0], "id_method": id_methods[0],
                          "entropy_alpha": float(alpha)})]
jobs += [(("curvature",), {"curvature_variant": v}) for v in curvature_variants[1:] if "curvature" in metrics]
jobs += [(("intrinsic_dimension",), {"id_method": m}) for m in id_methods[1:] if "intrinsic_dimension" in metrics]

twins: dict[str, dict | None] = {}
if with_twin:
    for r in compared:
        if gs.is_untrained(r):
            st.caption(f"{r['model']['name']} is already an untrained model; it gets no twin.")
        else:
            twins[r["key"]] = gs.find_twin(r, runs)
request = (tuple(r["key"] for r in compared), tuple(twins), tuple((m, gs.options_key(o)) for m, o in jobs))
requested = st.session_state.setdefault(REQUESTED, set())

if request not in requested:
    missing_twins = [r for r in compared if r["key"] in twins and twins[r["key"]] is None]
    work = [f"{len(jobs)} metric set(s) x {len(compared) + len(twins)} run(s)"]
    if missing_twins:
        work.append("extracting the untrained twin of " + ", ".join(r["model"]["name"] for r in missing_twins))
    st.caption("Computing: " + "; ".join(work) + ". Results are stored in the workspace and read back next time.")
    if not st.button("Compute geometry", type="primary", icon=":material/play_arrow:"):
        st.stop()
    with widgets.user_errors():
        for r in missing_twins:
            bar = st.progress(0.0, text=f"Extracting the untrained twin of {r['model']['name']}...")
            gs.extract_twin(r, progress=lambda d, t, m, bar=bar: bar.progress(d / max(t, 1), text=f"Twin: {m}"))
            bar.empty()
            twins[r["key"]] = gs.find_twin(r, services.list_runs())
        keys = [r["key"] for r in compared] + [t["key"] for t in twins.values() if t]
        bar = st.progress(0.0, text="Computing geometry...")
        steps = len(keys) * len(jobs)
        for i, (run_key, (job_metrics, options)) in enumerate((k, j) for k in keys for j in jobs):
            def report(done, total, message, i=i):
                bar.progress(min(1.0, (i + done / max(total, 1)) / steps), text=f"Geometry {i + 1}/{steps}: {message}")

            gs.compute_geometry(run_key, job_metrics, options, progress=report)
        bar.empty()
        requested.add(request)
    if request not in requested:  # an error was shown
        st.stop()

# ----- results ---------------------------------------------------------------------------
def label(r: dict) -> str:
    """Legend name of a run: its model, plus dataset or pooling when both runs are of one model."""
    name = r["model"]["name"]
    if len(compared) == 2 and compared[0]["model"]["name"] == compared[1]["model"]["name"]:
        same_data = compared[0]["dataset"]["name"] == compared[1]["dataset"]["name"]
        name += f" · {r['pooling'] if same_data else r['dataset']['name']}"
    return name


entries = []  # (legend base name, run, is control)
for r in compared:
    entries.append((label(r), r, False))
    twin = twins.get(r["key"])
    if twin is not None:
        entries.append((label(r).replace(r["model"]["name"], twin["model"]["name"], 1), twin, True))

with widgets.user_errors():
    results = {
        (r["key"], i): gs.geometry_result(r["key"], job_metrics, gs.options_key(options))
        for _, r, _ in entries
        for i, (job_metrics, options) in enumerate(jobs)
    }
    controls: set[str] = set()
    for metric in metrics:
        for name in RESULT_METRICS[metric]:
            job_ids = [i for i, (job_metrics, _) in enumerate(jobs) if metric in job_metrics]
            curves, recipe = {}, []  # recipe: how core.export rebuilds each curve from the store
            for base, r, is_control in entries:
                for i in job_ids:
                    result = results[(r["key"], i)]
                    key = base if len(job_ids) == 1 else f"{base} · {metric_variant(result, name)}"
                    curves[key] = result
                    recipe.append({"name": key, "run": r["key"], "metrics": list(jobs[i][0]), "options": jobs[i][1]})
                    if is_control:
                        controls.add(key)
            title = f"{METRIC_TITLES.get(name, name)} by layer · {run['dataset']['name']}"
            fig = geometry_curves(curves, name, relative_depth=relative, controls=controls, title=title)
            spec = figure_spec("geometry_curves", list(dict.fromkeys(c["run"] for c in recipe)), curves=recipe,
                               metric=name, relative_depth=relative, controls=sorted(controls), title=title)
            show_figure(fig, name=f"geometry-{name}", spec=spec, key=f"geometry_{name}", width="stretch")
            for key, result in curves.items():
                reason = result.reasons.get(name)
                if reason:
                    st.warning(f"{key}: {name.replace('_', ' ')} is NaN or leaves inputs out where undefined: "
                               f"{reason}", icon=":material/warning:")
                    if metric in PER_INPUT_METRICS and result.params.get("pooling") != "tokens":
                        st.page_link("views/workspace.py", label="Extract a run with pooling='tokens'",
                                     icon=":material/arrow_forward:")
            with st.expander(f"Numbers per layer: {name.replace('_', ' ')} ({display_unit(name)})"):
                table = pd.concat(
                    [
                        pd.DataFrame({
                            "run": key,
                            "layer": list(result.layer_names),
                            "value": in_display_units(name, result.mean[name]),
                            "q25": in_display_units(name, result.q25[name]),
                            "q75": in_display_units(name, result.q75[name]),
                            "inputs left out": result.n_skipped[name],
                        })
                        for key, result in curves.items()
                    ],
                    ignore_index=True,
                )
                st.dataframe(table, hide_index=True, width="stretch")
st.caption(
    "Per-input metrics (curvature, prompt entropy) show the mean over inputs with the interquartile band; "
    "dataset metrics use one vector per input (the token mean on a tokens run). Undefined values are gaps, "
    "never interpolated. Curvature is computed in radians and drawn in degrees."
)
