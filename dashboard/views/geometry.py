"""Geometry: curvature, intrinsic dimension, entropy, rank and anisotropy against depth."""

import streamlit as st

from core.analysis.geometry import (
    BAND_METRICS,
    CURVATURE_DEGENERATE,
    CURVATURE_VARIANTS,
    ENTROPY_VARIANTS,
    GEOMETRY_METRICS,
    ID_METHODS,
    PER_INPUT_METRICS,
    RESULT_METRICS,
    geometry_bands,
    geometry_by_layer,
)
from core.data.naming import display_name
from core.figures.geometry import METRIC_TITLES, display_unit, metric_variant
from core.recipes.geometry import band_metrics, duplicates_note
from core.runs import TWIN_SEED
from dashboard import actions, cached, demo_status, planning, run_choice, state, widgets
from dashboard.figure_export import build, show_built
from dashboard.live_progress import LiveProgress, is_stopped, stopped

VARIANT_NAMES = {"signed": "signed (Hosseini & Fedorenko)", "abs": "abs (Skean et al.)",
                 "twonn": "TwoNN (linear fit, dadapy)", "mle": "maximum likelihood",
                 "exact": "exact (Gram spectrum)", "skean": "skean (Gram clamped at 0, Skean et al.)",
                 "skip": "left out", "zero": "counted as 0° (Skean et al.)"}

widgets.page_header(
    "Geometry",
    "How the shape of the representation changes with depth: trajectory curvature, intrinsic dimension, "
    "entropy, effective rank and anisotropy of every layer, with the spread over inputs.",
)

if (key := run_choice.choose_run(cached.list_runs(), state.run_key(), prefer=run_choice.is_tokens)) is not None:
    state.set_run_key(key)  # the current run; on a first visit a per-token run (every metric is defined on it)
run = widgets.run_picker()
if run is None:
    widgets.empty_state(
        "No runs yet: extract activations on the Workspace page. Curvature and prompt entropy need a run "
        "extracted with pooling='tokens'.",
        page=widgets.WORKSPACE_PAGE,
        label="Go to Workspace",
    )
    st.stop()
if widgets.open_run_or_error(run) is None:
    st.stop()
runs = cached.list_runs()

with st.sidebar:
    st.markdown("##### Geometry")
    metrics = st.multiselect(
        "Metrics", list(GEOMETRY_METRICS), default=run_choice.geometry_metrics(run),
        format_func=lambda m: METRIC_TITLES.get(m, m.replace("_", " ").capitalize()),
        help="; ".join(f"{m}: {what}" for m, what in GEOMETRY_METRICS.items()),
    )
    curvature_variants = ["signed"]
    if "curvature" in metrics:
        curvature_variants = st.multiselect(
            "Curvature variant", list(CURVATURE_VARIANTS), default=["signed"], format_func=VARIANT_NAMES.get,
            help="signed: arccos of the step cosine, 0-180° (default). abs: arccos of its absolute value, 0-90°.",
        ) or ["signed"]
    degenerate = "skip"
    if "abs" in curvature_variants:
        degenerate = st.radio(
            "Zero-length steps (abs)", list(CURVATURE_DEGENERATE), format_func=VARIANT_NAMES.get, horizontal=True,
            help="Identical consecutive tokens make a zero-length step, whose angle is undefined. Left out "
            "(default): those angles and inputs under 3 tokens are skipped. Counted as 0°: those angles are 0 "
            "and inputs under 3 tokens have curvature 0, as in Skean et al.'s code.",
        )
    id_methods = ["twonn"]
    if "intrinsic_dimension" in metrics:
        id_methods = st.multiselect(
            "Intrinsic-dimension estimator", list(ID_METHODS), default=["twonn"], format_func=VARIANT_NAMES.get,
            help="TwoNN (Facco et al. 2017) on the lowest 90% of the distance ratios, or its maximum-likelihood form.",
        ) or ["twonn"]
    alpha, entropy_variants = 1.0, ["exact"]
    if {"dataset_entropy", "prompt_entropy"} & set(metrics):
        alpha = st.number_input("Entropy order α", min_value=0.1, max_value=10.0, value=1.0, step=0.5,
                                help="Rényi order of the matrix entropy; 1 is the Shannon (von Neumann) limit.")
        entropy_variants = st.multiselect(
            "Entropy convention", list(ENTROPY_VARIANTS), default=["exact"], format_func=VARIANT_NAMES.get,
            help="exact (default): the spectrum of the Gram matrix of centred unit rows, the same on either side. "
            "skean: negative Gram entries set to 0 before the eigendecomposition, as in Skean et al.'s code; "
            "the value then depends on which side (n x n or d x d) is used.",
        ) or ["exact"]
    st.markdown("##### Compare")
    others = [r for r in runs if r["key"] != run["key"]]
    others_by_key = {r["key"]: r for r in others}
    compare_key = st.selectbox(
        "Second run", [None, *others_by_key],
        format_func=lambda k: "(none)" if k is None else widgets.describe_run(others_by_key[k]),
        help="Overlay another model (any depth): the relative-depth axis lines up their layers.",
    )
    with_twin = st.toggle(
        "Trained vs untrained",
        help="Also extract the same inputs from the same architecture with re-initialised weights (seed "
        f"{TWIN_SEED}): the classic control for curvature and intrinsic dimension.",
    )
    with_bands = bool(set(metrics) & set(BAND_METRICS)) and st.toggle(
        "Bootstrap bands", key=state.Geometry.BANDS,
        help="Intrinsic dimension, dataset entropy and effective rank recomputed on 50 resamples of the inputs; "
        "the band is their 95% percentile interval. Entropy and rank: inputs drawn with replacement. Intrinsic "
        "dimension: 80% of the inputs without replacement (a repeated input is at distance 0). "
        "Costs 50 times the metric.",
    )
    relative = st.toggle("Relative depth axis", value=True,
                         help="x = layer / last layer (0 = embeddings, 1 = last layer), so models of different "
                         "depth line up.")

if not metrics:
    widgets.empty_state("Pick one or more metrics in the sidebar.")
    st.stop()

# ----- what to compute --------------------------------------------------------------------
jobs = planning.geometry_jobs(metrics, curvature_variants, id_methods, alpha, entropy_variants=entropy_variants,
                              curvature_degenerate=degenerate)
plan = planning.plan_geometry(run, runs, second=compare_key, jobs=jobs, with_twin=with_twin)
for r in plan.untrained:
    st.caption(f"{r['model']['name']} is already an untrained model; it gets no twin.")
requested = state.computed(state.Geometry.COMPUTED)
request = (plan.request, with_bands)
band_jobs = [(k, band_metrics(m), o) for k in plan.run_keys() for m, o in jobs if band_metrics(m)] if with_bands else []


def bands_stored() -> bool:
    """Whether every band the page draws is in the workspace already."""
    return all(geometry_bands(cached.open_run(k), m, store=cached.store(), stored_only=True, **o) is not None
               for k, m, o in band_jobs)


if request not in requested and demo_status.waiting_for(("geometry",), "Geometry"):
    st.stop()
if request not in requested and not plan.missing_twins and all(  # stored (e.g. by the demo): shown at once
        geometry_by_layer(cached.open_run(k), m, store=cached.store(), stored_only=True, **o) is not None
        for k in plan.run_keys() for m, o in jobs) and bands_stored():
    requested.add(request)
retry = False
if request not in requested and is_stopped(state.Geometry.BANDS_STOPPED, request):
    if stopped(state.Geometry.BANDS_STOPPED, request, what="Computing the bootstrap bands", retry="Compute again"):
        st.stop()
    retry = True
if request not in requested:
    bands_words = " and bootstrap bands (50 resamples)" if with_bands else ""
    st.caption(f"Computing: {plan.summary()}{bands_words}. Results are stored in the workspace and read back "
               "next time.")
    if not (retry or st.button("Compute geometry", type="primary", icon=":material/play_arrow:")):
        st.stop()
    with widgets.user_errors():
        for r in plan.missing_twins:
            bar = widgets.ProgressBar(f"Extracting the untrained twin of {r['model']['name']}...",
                                      describe=lambda d, t, what: f"Twin: {what}")
            actions.extract_twin(r, progress=bar)
            bar.empty()
        plan.update_twins(cached.list_runs())
        keys = plan.run_keys()
        bar = widgets.ProgressBar("Computing geometry...")
        steps = len(keys) * len(jobs)
        for i, (run_key, (job_metrics, options)) in enumerate((k, j) for k in keys for j in jobs):
            step = bar.step(i / steps, 1 / steps, describe=lambda d, t, what, i=i: f"Geometry {i + 1}/{steps}: {what}")
            actions.compute_geometry(run_key, job_metrics, options, progress=step)
        bar.empty()
        live = LiveProgress("Bootstrap bands", key=state.Geometry.BANDS_STOPPED, request=request,
                            describe=lambda done, total, what: what)
        try:
            for i, (run_key, band_metric_names, options) in enumerate(band_jobs):
                def band_step(done: int, total: int, what: str, i: int = i) -> None:
                    live(1000 * i + 1000 * done // max(total, 1), 1000 * len(band_jobs),
                         f"run {i + 1} of {len(band_jobs)}, {what}")

                geometry_bands(cached.open_run(run_key), band_metric_names, store=cached.store(), progress=band_step,
                               **options)
        finally:
            live.empty()
        requested.add(request)
    if request not in requested:  # an error was shown
        st.stop()

# ----- results ---------------------------------------------------------------------------
entries = [(e.name, e.run, e.control) for e in plan.entries()]  # (legend base name, run, is control)

with widgets.user_errors():
    results = {
        (r["key"], i): cached.geometry_result(r["key"], job_metrics, cached.params_key(options))
        for _, r, _ in entries
        for i, (job_metrics, options) in enumerate(jobs)
    }
    controls: set[str] = set()
    for metric in metrics:
        for name in RESULT_METRICS[metric]:
            job_ids = plan.jobs_with(metric)
            curves, recipe = {}, []  # recipe: each curve's run, metrics and options (core.recipes.geometry)
            for base, r, is_control in entries:
                for i in job_ids:
                    result = results[(r["key"], i)]
                    key = base if len(job_ids) == 1 else f"{base} · {metric_variant(result, name)}"
                    curves[key] = result
                    recipe.append({"name": key, "run": r["key"], "metrics": list(jobs[i][0]), "options": jobs[i][1]})
                    if is_control:
                        controls.add(key)
            title = f"{METRIC_TITLES.get(name, name)} by layer · {display_name(run['dataset']['name'])}"
            built = build("geometry_curves", list(dict.fromkeys(c["run"] for c in recipe)), curves=recipe, metric=name,
                          relative_depth=relative, controls=sorted(controls), bands=with_bands, title=title)
            show_built(built, key=state.Geometry.chart(name), width="stretch")
            if name == "intrinsic_dimension" and built.analysis.get("bands"):
                st.caption("The intrinsic-dimension band uses subsamples without replacement: a resample with "
                           "replacement repeats inputs, and a repeated input is at distance 0 from its copy, which "
                           "TwoNN cannot use. It shows the spread on 80% of the inputs, a little wider than at all.")
            for key, about in (built.analysis.get("bands") or {}).items():
                if about["reason"]:
                    st.caption(f"{key}, {about['band']}: {about['reason']}.")
            for key, result in curves.items():
                reason = result.reasons.get(name)
                if reason:
                    st.warning(f"{key}: {name.replace('_', ' ')} is NaN or leaves inputs out where undefined: "
                               f"{reason}", icon=":material/warning:")
                    if metric in PER_INPUT_METRICS and result.params.get("pooling") != "tokens":
                        st.page_link(widgets.WORKSPACE_PAGE, label="Extract a run with pooling='tokens'",
                                     icon=":material/arrow_forward:")
            note = duplicates_note(curves) if name == "intrinsic_dimension" else None
            if note:
                st.caption(note)
            with st.expander(f"Numbers per layer: {name.replace('_', ' ')} ({display_unit(name)})"):
                st.dataframe(built.table, hide_index=True, width="stretch")
st.caption(
    "Per-input metrics (curvature, prompt entropy) show the mean over inputs with the interquartile band; "
    "with Bootstrap bands, intrinsic dimension, dataset entropy and effective rank show a band over resampled inputs; "
    "dataset metrics use one vector per input (the token mean on a tokens run). Undefined values are gaps, "
    "never interpolated. Curvature is computed in radians and drawn in degrees."
)
