"""Probes: where each label becomes linearly decodable, layer by layer."""

import numpy as np
import streamlit as st

from core.analysis.probes import CONTROL_NAMES, run_word_types
from core.analysis.probes.bootstrap import difference_words
from core.errors import LayerscopeError
from core.figures.probes import baseline_name
from dashboard import actions, cached, state, widgets
from dashboard.figure_export import build, show_built
from dashboard.live_progress import LiveProgress, stopped

AUTO_RUN_MAX_INPUTS = 5000  # smaller runs are probed on arrival; larger ones wait for the button
CONTROL_CHOICES = {"task": "Control task (one label per word)", "shuffled": "Shuffled labels"}

widgets.page_header(
    "Probes",
    "Accuracy of a linear probe on each layer (stratified 5-fold cross-validation), against chance and a "
    "control task. Continuous labels use ridge regression and held-out R².",
)

acts = widgets.current_run()
if not acts.label_columns:
    widgets.empty_state("This run has no label columns. Extract a dataset with labels (e.g. demo:sentences).",
                        page=widgets.WORKSPACE_PAGE, label="Go to Workspace")
    st.stop()

with st.sidebar:
    st.markdown("##### Probe")
    columns = st.multiselect("Labels", acts.label_columns, default=acts.label_columns[:2])
    st.caption("Multinomial logistic regression (L2, C = 1) on standardised features; ridge with "
               "alpha chosen on each training split for continuous labels. Seed 0.")
    _, not_words = run_word_types(acts)
    if not_words is None:  # Hewitt & Liang's control task applies to word inputs: the default there
        control = st.radio("Control", list(CONTROL_CHOICES), format_func=CONTROL_CHOICES.get,
                           key=state.Probes.CONTROL,
                           help="Control task (Hewitt & Liang 2019): each word gets one random label, the same at "
                                "every occurrence, drawn from the label distribution; a probe that fits it memorises "
                                "words. Shuffled labels: the labels permuted across inputs.")
    else:
        control = "shuffled"
        st.caption(f"Control: shuffled labels. The control task (one random label per word type, Hewitt & Liang "
                   f"2019) needs inputs that are single words, and here {not_words}.")

if not columns:
    widgets.empty_state("Pick one or more label columns in the sidebar.")
    st.stop()

requested = state.computed(state.Probes.COMPUTED)
key = (acts.key, tuple(columns), control)
if acts.n_inputs <= AUTO_RUN_MAX_INPUTS:
    requested.add(key)
elif key not in requested:
    st.caption(f"{acts.n_inputs:,} inputs x {len(acts.layer_names)} layers x 5 folds per label.")
    if st.button("Run probes", type="primary"):
        requested.add(key)
        st.rerun()
    st.stop()


def fits_done(done: int, total: int, what: str) -> str:
    """How far the probes are, in words: fits done over all layers ("12/70 fits done"), or ridge's fold."""
    if what.startswith("logistic"):  # core counts the fits of its current batch of layers: show all of them
        return f"{done}/{total} fits done"
    return f"{what.rsplit(': ', 1)[-1]} ({done} of {total} steps)" if what else f"{done} of {total}"


for column in columns:
    st.markdown(f"#### {column}")
    request = (acts.key, column, control)
    if stopped(state.Probes.stopped(column), request, what=f"Probing {column}", retry="Probe again"):
        continue
    try:
        # computed (or read back from the workspace, drawing nothing) behind a bar with Cancel, then read from memory
        bar = LiveProgress(f"Probing {column} on {len(acts.layer_names)} layers (5-fold cross-validation)",
                           key=state.Probes.stopped(column), request=request, describe=fits_done)
        try:
            actions.compute_probe(acts.key, column, control=control, progress=bar)
        finally:
            bar.empty()
        result = cached.probe_result(acts.key, column, control=control)
    except LayerscopeError as err:
        widgets.show_error(err, about=column)
        continue
    best = int(np.nanargmax(result.mean))
    score = "accuracy" if result.metric == "accuracy" else "R²"
    baseline = baseline_name(result.metric)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Best layer", f"{best} · {result.layer_names[best]}")
    c2.metric(f"Held-out {score}", f"{result.mean[best]:.3f} ± {result.std[best]:.3f}")
    c3.metric(baseline[0].upper() + baseline[1:], f"{result.chance:.3f}",
              help="share of the most frequent label: the accuracy of always predicting it"
              if result.metric == "accuracy" else "R² of always predicting the mean label: 0 by definition")
    c4.metric("Selectivity", f"{result.selectivity[best]:.3f}", help="probe score minus the score of the same probe "
              f"on the {CONTROL_NAMES[control]}, at the best layer")
    if getattr(result, "n_dropped", 0):
        st.caption(f"{result.n_dropped} inputs without a {column} value were left out.")
    title = f"{acts.model_name} on {acts.dataset_name}: probing {column}"
    try:
        built = build("probe_curve", [acts.key], column=column, control=control, title=title)
    except LayerscopeError as err:
        widgets.show_error(err, about=column)
        continue
    test = built.analysis.get("interval")
    if test:
        versus = ("the best layer is the last layer" if test["best_layer"] == test["last_layer"] else
                  difference_words(test["best_minus_last"], *test["best_minus_last_interval"],
                                   test["p_value_one_sided"]))
        st.markdown(f"**Best layer vs last layer:** {versus}")
        st.caption(f"Difference in held-out {score} of the out-of-fold predictions, paired bootstrap over inputs "
                   f"(one-sided p-value; the best layer is picked on the same data). Band: {test['interval']}.")
    event = show_built(built, key=state.Probes.chart(column),
                       width="stretch", on_select="rerun", selection_mode=("points",))
    points = event.selection.points if event and event.selection else []
    if points:
        layer_index = round(points[0]["x"])
        state.set_explorer_layer(result.layer_names[layer_index])
        st.switch_page("views/explorer.py")
    left, right = st.columns([3, 1])
    with left.expander("Numbers per layer"):
        st.dataframe(result.to_frame(), hide_index=True, width="stretch")
    target = right.selectbox("Layer", result.layer_names, index=best, key=state.Probes.layer(column),
                             format_func=lambda name, names=result.layer_names: widgets.layer_label(name, names),
                             label_visibility="collapsed")
    if right.button("Open in explorer", key=state.Probes.open_layer(column), icon=":material/scatter_plot:"):
        state.set_explorer_layer(target)
        st.switch_page("views/explorer.py")
st.caption("Click a point of a curve (or use Open in explorer) to see that layer's map.")
