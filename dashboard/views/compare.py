"""Compare two models: layer-by-layer similarity heatmaps with linked maps."""

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from core.analysis.similarity import metric_choices, metric_label
from core.data.naming import display_name
from core.errors import LayerscopeError
from core.runs import is_untrained
from dashboard import actions, cached, pairing, planning, state, widgets
from dashboard.figure_export import build, show_built
from dashboard.live_progress import LiveProgress, is_stopped, stopped

widgets.page_header(
    "Compare",
    "Two models on the same inputs, layer by layer: CKA, mutual k-NN, SVCCA, RSA. Click a cell to see both "
    "layers' maps side by side; a box or lasso selection in one map highlights the same inputs in the other.",
)

RESUMES = "The batches extracted so far are kept, unfinished: extracting again resumes from them."

runs = widgets.workspace_runs()
by_key = {r["key"]: r for r in runs}


@st.cache_data(show_spinner=False, max_entries=256)
def token_signature(run_key: str) -> str | None:
    """The run's tokenisation (token ids and input boundaries, hashed), None if it cannot be read."""
    try:
        return pairing.token_signature(cached.open_run(run_key))
    except LayerscopeError:
        return None


tokenisations = {r["key"]: token_signature(r["key"]) for r in runs if r["pooling"] == "tokens"}


def choose_b(key: str) -> None:
    """Make run `key` model B (a button's callback, before the select box is drawn)."""
    st.session_state[state.Compare.MODEL_B] = key


def pairs_progress(n_layers: int) -> Callable[[int, int, str], str]:
    """Words for the similarity's progress: the layer being prepared (k of n) and the layer pairs done."""
    prepared = [0]

    def describe(done: int, total: int, what: str) -> str:
        pairs = f"{done} of {total} layer pairs done"
        if what.startswith("preparing"):
            prepared[0] = min(prepared[0] + 1, n_layers)
            return f"{what} ({prepared[0]} of {n_layers} layers) · {pairs}"
        return pairs

    return describe


def extract_with_progress(title: str, request: tuple, work: Callable, *,
                          describe: Callable[[int, int, str], str] | None = None) -> None:
    """Run an extraction behind a live progress bar; the run it made becomes model B."""
    st.session_state.pop(state.Compare.EXTRACT_STOPPED, None)  # asked again: the earlier stop is over
    bar = LiveProgress(title, key=state.Compare.EXTRACT_STOPPED, request=request, eager=True,
                       starting="loading the model",
                       describe=describe or (lambda done, total, _: f"batch {done} of {total}"))
    try:
        st.session_state[state.Compare.MODEL_B_NEXT] = work(bar)
    finally:
        bar.empty()  # no bar left behind, also after an error
    st.rerun()


def calibrated(request: tuple, title: str, work: Callable, *, offer: str, label: str) -> Any:
    """`work(bar)` once asked for by its button (then kept for the session), with live progress; None until then."""
    asked = state.computed(state.Compare.NULL_COMPUTED)
    clicked = False
    if is_stopped(state.Compare.NULL_STOPPED, request):
        clicked = not stopped(state.Compare.NULL_STOPPED, request, what=title, retry="Compute again")
    elif request not in asked:
        slot = st.empty()
        with slot.container():
            st.caption(offer)
            clicked = st.button(label, icon=":material/play_arrow:", key=f"{state.Compare.NULL_COMPUTED}_{request[0]}")
        if clicked:
            slot.empty()  # the bar takes its place
    if not (clicked or request in asked):
        return None
    bar = LiveProgress(title, key=state.Compare.NULL_STOPPED, request=request, eager=clicked,
                       describe=lambda done, total, what: what)
    asked.discard(request)  # until complete: a Cancel click leaves it out
    try:
        result = work(bar)
    finally:
        bar.empty()
    asked.add(request)
    return result


# ----- model A, model B ------------------------------------------------------------------------------
with st.sidebar:
    st.markdown("##### Models")
    if state.run_key() != st.session_state.get(state.Compare.SHOWN_A):  # arriving: open on a run with a partner
        demo = next((r["key"] for r in runs if (r["model"]["name"], r["dataset"]["name"], r["pooling"])
                     == widgets.DEMO_RUN), None)
        opening = pairing.pair_to_open(runs, state.run_key(), demo=demo, tokenisations=tokenisations,
                                       pool_tokens=bool(st.session_state.get(state.Compare.POOL_TOKENS)))
        if opening:
            state.set_run_key(opening)
    run_a = widgets.run_picker(label="Model A")
    st.session_state[state.Compare.SHOWN_A] = run_a["key"]  # picked here from now on: kept, partner or not
    same_inputs = planning.same_inputs(run_a, runs)
    arriving = by_key.get(st.session_state.get(state.Compare.MODEL_B_NEXT))
    if arriving and pairing.why_not_comparable(run_a, arriving, tokenisations=tokenisations) == \
            pairing.OTHER_TOKENISATION:
        st.session_state[state.Compare.POOL_TOKENS] = True  # just extracted with another tokeniser: pool to compare
    pool_tokens = False
    if any(r["pooling"] == "tokens" for r in same_inputs):
        pool_tokens = st.checkbox(
            "Pool per-token runs", key=state.Compare.POOL_TOKENS,
            help="Off: a per-token run is compared token by token with per-token runs tokenised alike. On: "
            "each input's mean token vector stands for it, so it pairs with mean-pooled runs and with "
            "per-token runs of other tokenisers.")
    pair = pairing.pair_runs(run_a, runs, pool_tokens=pool_tokens, tokenisations=tokenisations)
    options = [p["key"] for p in pair.partners] + [run_a["key"]]  # model A itself last: a sanity check
    if st.session_state.get(state.Compare.MODEL_B_NEXT) in options:
        choose_b(st.session_state.pop(state.Compare.MODEL_B_NEXT))
    if st.session_state.get(state.Compare.MODEL_B) not in options:
        st.session_state[state.Compare.MODEL_B] = pair.default  # None: nothing comparable, nothing picked
    key_b = st.selectbox(
        "Model B", options, key=state.Compare.MODEL_B, placeholder="No comparable run yet (see the page)",
        format_func=lambda k: ("model A itself (a sanity check)" if k == run_a["key"]
                               else widgets.describe_run(by_key[k])),
        help="Runs on the same inputs in the same order whose rows mean the same: the same pooling, or per-token "
        "runs tokenised alike. Model A itself is listed last, as a sanity check (a diagonal of 1).")
    if key_b:
        st.caption(widgets.run_details(by_key[key_b]) if key_b != run_a["key"] else "Model A itself")
    pool_tip = (" Tick *Pool per-token runs* in the sidebar to compare per-token runs by each input's mean token "
                "vector." if any("per-token" in why for why in pair.left_out) and not pool_tokens else "")
    if pair.left_out:
        st.caption(f"{pair.summary()}.{pool_tip}")
    run_b = by_key.get(key_b) if key_b else None
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
    calibrate = st.checkbox(
        "Calibrate against a permutation null", key=state.Compare.NULL,
        help="Shuffle the rows of model B (one permutation for all its layers) and recompute every cell, many "
        "times: cells not above that null (p >= 0.05) get a grey x, the hover gives the null mean and p, and a "
        "clicked cell can get a bootstrap interval over inputs.")
    n_permutations = int(st.number_input("Permutations", 20, 1000, 100, 10, key=state.Compare.NULL_PERMUTATIONS,
                                                 help="At least 20: the smallest p-value is 1 / (1 + permutations).")) \
        if calibrate else None

# ----- partners: the untrained twin, another model ----------------------------------------------------
model_a = run_a["model"]["name"]
text_run = run_a["dataset"]["modality"] == "text"
if run_b is None:
    why = f" ({pair.summary()})" if pair.left_out else ""
    st.info(f"No other run is comparable with model A yet{why}. Extract its untrained twin or another model on the "
            f"same inputs below, then it becomes model B.{pool_tip}", icon=":material/info:")
if not is_untrained(run_a):
    twin = pair.twin
    if twin is not None and run_b is not None and twin["key"] == run_b["key"]:
        st.caption(f"Model B is the untrained twin of {model_a}: the same architecture with re-initialised weights "
                   "(seed 0), the baseline of what training added.")
    elif twin is not None:
        st.button(f"Compare with the untrained twin of {model_a}", icon=":material/shuffle:", on_click=choose_b,
                  args=(twin["key"],), disabled=twin["key"] not in options,
                  help="The same architecture with re-initialised weights (seed 0) on the same inputs.")
    elif text_run:
        twin_request = ("twin", run_a["key"])
        stopped(state.Compare.EXTRACT_STOPPED, twin_request, what="Extracting the untrained twin", kept=RESUMES)
        if st.button(f"Extract the untrained twin of {model_a} and compare", icon=":material/shuffle:",
                     type="primary" if run_b is None else "secondary",
                     help="Re-initialise the same architecture (seed 0) and extract it on these inputs, with the "
                     "same layers and pooling."):
            with widgets.user_errors():
                extract_with_progress(f"Extracting the untrained twin of {model_a}", twin_request,
                                      lambda bar: actions.extract_twin(run_a, progress=bar))
if run_b is None and not text_run:
    digits_request = ("digits pair",)
    stopped(state.Compare.EXTRACT_STOPPED, digits_request, what="Training and extracting the digits MLPs",
            kept="A model trained and the batches extracted so far are kept: starting again goes on from them.")
    if st.button("Train two digits MLPs (seeds 0 and 1) and extract them", icon=":material/school:"):
        with widgets.user_errors():
            extract_with_progress("Training and extracting two digits MLPs", digits_request,
                                  lambda bar: actions.make_digits_pair(progress=bar)[1],
                                  describe=lambda done, total, what: what)

if text_run:
    with st.expander(f"Extract another model on these {run_a['n_inputs']:,} inputs", expanded=run_b is None,
                     icon=":material/add:"):
        source = st.radio("Model", ["Bundled", "Folder or hub id"], horizontal=True, key=state.Compare.PARTNER_SOURCE,
                          label_visibility="collapsed")
        if source == "Bundled":
            partner = st.selectbox("Bundled model", actions.TEXT_MODELS, key=state.Compare.PARTNER_BUNDLED,
                                   index=planning.partner_model(run_a, actions.TEXT_MODELS))
        else:
            partner = st.text_input("Model folder or hub id", key=state.Compare.PARTNER_TYPED,
                                    placeholder="/path/to/hf-model or org/name").strip()
        pooling = widgets.POOLING_WORDS.get(run_a["pooling"], run_a["pooling"])
        stopped(state.Compare.EXTRACT_STOPPED, ("partner", run_a["key"], partner), what=f"Extracting {partner}",
                kept=RESUMES)
        if st.button(f"Extract {partner or '...'} on {display_name(run_a['dataset']['name'])} ({pooling})",
                     icon=":material/download:", key=state.Compare.PARTNER_EXTRACT, disabled=not partner):
            with widgets.user_errors():
                extract_with_progress(f"Extracting {partner}", ("partner", run_a["key"], partner),
                                      lambda bar: actions.extract_partner(run_a, partner, progress=bar))

if run_b is None:
    st.stop()

# ----- the heatmap ---------------------------------------------------------------------------------
rows = pairing.INPUT_ROWS if run_a["pooling"] != "tokens" or pool_tokens else pairing.TOKEN_ROWS
if run_b["key"] != run_a["key"]:
    rows = pair.rows(run_b)
label = metric_label(metric, params)
request = ("similarity", run_a["key"], run_b["key"], metric, cached.params_key(params), rows)
if stopped(state.Compare.STOPPED, request, what=f"{label} of {model_a} with {run_b['model']['name']}",
           retry="Compare again"):
    st.stop()
with widgets.user_errors():
    n_layers = len(run_a["layers"]) + (len(run_b["layers"]) if run_b["key"] != run_a["key"] else 0)
    bar = LiveProgress(f"{label} of {model_a} with {run_b['model']['name']}", key=state.Compare.STOPPED,
                       request=request, describe=pairs_progress(n_layers))
    try:
        result = actions.compute_similarity(run_a["key"], run_b["key"], metric, params, rows=rows, progress=bar)
    finally:
        bar.empty()
    acts_a, acts_b = cached.open_run(run_a["key"]), cached.open_run(run_b["key"])

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

    pooled = rows == pairing.INPUT_ROWS and "tokens" in (run_a["pooling"], run_b["pooling"])
    title = (f"{result.label}: {acts_a.model_name} vs {acts_b.model_name} on {acts_a.dataset_name}"
             + (" · per-token runs as mean token vectors" if pooled else ""))
    # the click that caused this run is in the chart's state already: read it before drawing,
    # so the clicked cell is outlined in this run, not the next
    clicked = st.session_state.get(state.Compare.HEATMAP)
    points = clicked.selection.points if clicked and clicked.get("selection") else []
    if points:
        picked = points[0].get("customdata")
        if picked is not None and len(np.ravel(picked)) >= 2:  # a cell marker or a best-match marker
            layer_a, layer_b = (str(v) for v in np.ravel(picked)[:2])
        else:
            layer_a = result.layers_a[round(points[0]["y"])]
            layer_b = result.layers_b[round(points[0]["x"])]
        st.session_state[state.Compare.CELL] = (layer_a, layer_b)
    calibration, interval = {}, None
    if calibrate:
        words = f"{label} of {model_a} with {run_b['model']['name']}"
        null_request = ("null", run_a["key"], run_b["key"], metric, cached.params_key(params), rows, n_permutations)
        null = calibrated(
            null_request, f"Permutation null of {words}",
            lambda bar: actions.compute_calibration(run_a["key"], run_b["key"], metric, params, kind="null", rows=rows,
                                                    n_permutations=n_permutations, progress=bar),
            offer=f"Shuffle model B's rows {n_permutations} times and recompute every cell: a p-value per cell "
            "(seconds to minutes, read back from the workspace once computed).",
            label=f"Compute the permutation null ({n_permutations} permutations)")
        if null is not None:
            calibration["n_permutations"] = n_permutations
        shown = st.session_state.get(state.Compare.CELL)
        if not shown or shown[0] not in result.layers_a or shown[1] not in result.layers_b:
            shown = best[:2] if best else (result.layers_a[-1], result.layers_b[-1])
        boot_request = ("bootstrap", run_a["key"], run_b["key"], metric, cached.params_key(params), rows, *shown)
        interval = calibrated(
            boot_request, f"Bootstrap of {shown[0]} x {shown[1]}",
            lambda bar: actions.compute_calibration(run_a["key"], run_b["key"], metric, params, kind="bootstrap",
                                                    rows=rows, n_boot=200, layers_a=[shown[0]],
                                                    layers_b=[shown[1]], progress=bar),
            offer=f"A 95% interval for cell A · {shown[0]} x B · {shown[1]} (click another cell to choose it): "
            "200 resamples of the inputs.",
            label="Compute its bootstrap interval")
        if interval is not None:
            calibration["n_boot"] = 200
            st.session_state[state.Compare.CELL] = tuple(shown)
    heatmap = build("similarity_heatmap", [acts_a.key, acts_b.key], metric=metric, metric_params=params, title=title,
                    fit_colours=fit_colours, selected=st.session_state.get(state.Compare.CELL), rows=rows,
                    **calibration)
    show_built(heatmap, key=state.Compare.HEATMAP, width="stretch", on_select="rerun", selection_mode=("points",))
    st.caption(heatmap.caption)
    if interval is not None:
        values = interval.cell(interval.layers_a[0], interval.layers_b[0])
        st.metric(f"{interval.layers_a[0]} x {interval.layers_b[0]}: {100 * interval.level:g}% bootstrap interval",
                  f"{values['low']:.3f} to {values['high']:.3f}", help=f"{interval.n_boot} resamples of the "
                  f"{interval.n} inputs, the same for both models; duplicates {interval.duplicates}. Value "
                  f"{values['observed']:.4f}.")
    cell = st.session_state.get(state.Compare.CELL)
    if not cell or cell[0] not in acts_a.layer_names or cell[1] not in acts_b.layer_names:
        cell = best[:2] if best else (acts_a.layer_names[-1], acts_b.layer_names[-1])

    # ----- linked maps -------------------------------------------------------------------------------
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
                picked_rows = sorted({int(np.ravel(p["customdata"])[0]) for p in chosen})
                if picked_rows != (selected or []):
                    st.session_state[state.Compare.SELECTION] = picked_rows
                    st.rerun()
    if selected and st.button("Clear selection"):
        st.session_state.pop(state.Compare.SELECTION, None)
        st.rerun()

    # ----- probe curves ------------------------------------------------------------------------------
    st.markdown("#### Per-layer curves on a relative-depth axis")
    if acts_a.label_columns:
        column = st.selectbox("Probe label", acts_a.label_columns)
        keys = list(dict.fromkeys([acts_a.key, acts_b.key]))
        probes_request = ("probes", *keys, column)
        asked = state.computed(state.Compare.PROBES_COMPUTED)
        clicked = False  # asked for in this run: the bar shows at once (the first fits take seconds)
        if is_stopped(state.Compare.PROBES_STOPPED, probes_request):
            clicked = not stopped(state.Compare.PROBES_STOPPED, probes_request, what=f"Probing {column}",
                                  retry="Probe again")
        elif probes_request not in asked:
            offer = st.empty()
            with offer.container():
                st.caption(f"A linear probe for {column} at every layer of both models (5-fold cross-validation): "
                           "seconds to minutes, read back from the workspace once computed.")
                clicked = st.button(f"Compute the probe curves for {column}", icon=":material/play_arrow:",
                                    key=state.Compare.PROBES_COMPUTED + "_go")
            if clicked:
                offer.empty()  # the bar takes its place
        if clicked or probes_request in asked:
            try:
                probes_bar = LiveProgress(f"Probing {column} on both models", key=state.Compare.PROBES_STOPPED,
                                          request=probes_request, describe=lambda done, total, what: what,
                                          eager=clicked, starting="fitting the first probes")
                asked.discard(probes_request)  # until complete: a Cancel click leaves it out
                try:
                    actions.compute_probe_curves(keys, column, progress=probes_bar)
                finally:
                    probes_bar.empty()
                asked.add(probes_request)
                names = [f"A: {acts_a.model_name}", f"B: {acts_b.model_name}"]
                show_built(build("probe_depth_curves", [acts_a.key, acts_b.key], column=column, names=names),
                           key=state.Compare.PROBE_CURVES, width="stretch")
            except LayerscopeError as err:
                widgets.show_error(err, about=column)
