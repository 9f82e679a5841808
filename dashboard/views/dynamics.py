"""Training dynamics: every layer of a model across the checkpoints of its training."""

from collections.abc import Callable, Hashable

import streamlit as st

from core.progress import Progress
from dashboard import actions, cached, series_choice, state, widgets
from dashboard.figure_export import build, show_built
from dashboard.live_progress import LiveProgress, is_stopped, stopped

X_AXIS_NAMES = {"step": "training step", "checkpoint": "one even space per checkpoint"}
OVER_NAMES = {"step": "one curve per layer, over training", "layer": "one curve per checkpoint, over the layers"}

widgets.page_header(
    "Training dynamics",
    "How each layer's representation forms during training: a per-layer metric at every checkpoint, each "
    "layer's similarity to its final state (bottom-up convergence, Raghu et al. 2017), and one layer's map "
    "across checkpoints.",
)


def build_bundled_series() -> None:
    """The empty state's button: train digits-mlp saving checkpoints, extract each, then show the series."""
    request = ("bundled series",)
    stopped(state.Dynamics.BUILD_STOPPED, request, what="Training and extracting the digits-MLP series",
            kept="Checkpoints already extracted are kept and reused by the next try.")
    if not st.button("Train and extract the digits-MLP series", type="primary", icon=":material/model_training:",
                     help=f"Trains {series_choice.BUNDLED_SERIES} (seed 0) saving 22 checkpoints and extracts each "
                     f"on {series_choice.BUNDLED_DATA}; about a minute on a CPU."):
        return
    st.session_state.pop(state.Dynamics.BUILD_STOPPED, None)
    bar = LiveProgress("Training and extracting the digits-MLP series", key=state.Dynamics.BUILD_STOPPED,
                       request=request, eager=True, describe=lambda done, total, what: what or f"{done} of {total}")
    try:
        with widgets.user_errors():
            actions.make_bundled_series(progress=bar)  # the newest series: the picker opens on it
            st.rerun()
    finally:
        bar.empty()


all_series = cached.list_series()
if not all_series:
    widgets.empty_state(
        "No checkpoint series yet. A series is one run per checkpoint of a training, extracted on the same "
        "inputs. Train the bundled digits MLP with its checkpoints here (about a minute), or extract your own "
        "checkpoints (a folder of checkpoint folders, or hub revisions with --revisions) from a terminal:"
    )
    st.code(series_choice.series_command("demo:sentences"), language="bash")
    build_bundled_series()
    st.stop()

by_key = {s.key: s for s in all_series}
if st.session_state.get(state.Dynamics.SERIES) not in by_key:  # a series deleted since: open another
    st.session_state.pop(state.Dynamics.SERIES, None)
with st.sidebar:
    st.markdown("##### Series")
    series_key = st.selectbox(
        "Series", list(by_key), key=state.Dynamics.SERIES,
        index=list(by_key).index(series_choice.choose_series(all_series, None)),
        format_func=lambda k: series_choice.describe_series(by_key[k]),
        help="A checkpoint series: one stored run per checkpoint, on the same inputs. Name · dataset · checkpoints · "
        f"pooling. Add your own with `{series_choice.series_command()}`.",
    )
    series = by_key[series_key]
    st.caption(series_choice.series_details(series))
final = widgets.open_run_or_error({"key": series.final_key})
if final is None:
    st.stop()
label_columns = list(final.label_columns)

with st.sidebar:
    st.markdown("##### Per-layer metric")
    metrics = series_choice.metric_choices(series)
    metric = st.selectbox("Metric", metrics, index=metrics.index(series_choice.DEFAULT_METRIC),
                          key=state.Dynamics.METRIC, format_func=series_choice.METRIC_NAMES.get,
                          help="Measured at every layer of every checkpoint. Curvature needs a per-token series.")
    column = None
    if metric == "probe":
        if label_columns:
            column = st.selectbox("Label column", label_columns, key=state.Dynamics.COLUMN,
                                  help="The label a linear probe decodes (5-fold cross-validation, seed 0).")
        else:
            st.caption("The series' inputs have no label column to probe.")
    over = st.radio("Curves", list(OVER_NAMES), format_func=OVER_NAMES.get, key=state.Dynamics.CURVES_OVER)
    st.markdown("##### Convergence")
    similarity = st.radio("Similarity to the final checkpoint", list(series_choice.SIMILARITY_NAMES),
                          format_func=series_choice.SIMILARITY_NAMES.get, key=state.Dynamics.SIMILARITY,
                          horizontal=True, help="Each layer at each checkpoint against the same layer of the final "
                          "checkpoint, on the same inputs. Mutual k-NN: k = 10.")
    x_axis = st.radio("Training axis", list(X_AXIS_NAMES), format_func=X_AXIS_NAMES.get, key=state.Dynamics.X_AXIS,
                      index=list(X_AXIS_NAMES).index(series_choice.default_x_axis(series)),
                      help="Checkpoints are often saved log-spaced; an even space per checkpoint shows early "
                      "training as clearly as late.")
    st.markdown("##### Map")
    layers = list(series.layers)
    layer = st.selectbox("Layer", layers, index=len(layers) - 1, key=state.Dynamics.LAYER,
                         format_func=lambda name: widgets.layer_label(name, layers))
    colour = st.selectbox("Colour by", [None, *label_columns], index=1 if label_columns else 0,
                          key=state.Dynamics.COLOUR, format_func=lambda c: "(none)" if c is None else c)


def ready(part: str, request: Hashable, *, what: str, button: str, compute: Callable[[Progress], object]) -> bool:
    """Whether `request` is computed in this session; otherwise its button, then the work with live progress.

    The result is stored in the workspace, so asking again (another session, a restart) reads it back at once.
    """
    requested = state.computed(state.Dynamics.COMPUTED)
    if request in requested:
        return True
    key = state.Dynamics.stopped(part)
    stopped(key, request, what=what)
    slot = st.empty()  # the button goes once clicked, so it does not stay above the result
    if not slot.button(button, key=state.Dynamics.compute(part), type="primary", icon=":material/play_arrow:"):
        return False
    slot.empty()
    if is_stopped(key, request):
        st.session_state.pop(key)
    bar = LiveProgress(what, key=key, request=request, eager=True)
    try:
        with widgets.user_errors():
            compute(bar)
            requested.add(request)
    finally:
        bar.empty()
    return request in requested


def show_reasons(result) -> None:
    """Say why cells are empty (undefined values are gaps, never filled in)."""
    if result.reasons:
        shown = "; ".join(f"{step} · {layer}: {why}" for step, layer, why in result.reasons[:3])
        more = f" (and {len(result.reasons) - 3} more)" if len(result.reasons) > 3 else ""
        st.caption(f":material/warning: {len(result.reasons)} empty cells: {shown}{more}.")


runs = list(series.run_keys)
figure_of_series = {"series": series.key}

# ----- a per-layer metric ----------------------------------------------------------------------------
st.subheader(f"{series_choice.METRIC_NAMES[metric].split(' (')[0]} at every checkpoint")
if metric == "probe" and column is None:
    widgets.empty_state("Probe accuracy needs a label column, and this series' inputs have none. Pick another metric.")
elif ready("metric", ("metric", series.key, metric, column),
           what=f"{series_choice.METRIC_NAMES[metric]} of {len(layers)} layers at {len(series)} checkpoints",
           button=f"Compute {series_choice.METRIC_NAMES[metric].split(' (')[0].lower()}",
           compute=lambda bar: actions.compute_layer_metric(series, metric, column, progress=bar)):
    with widgets.user_errors():
        built = build("dynamics_heatmap", runs, **figure_of_series, metric=metric, column=column)
        show_built(built, key=state.Dynamics.HEATMAP, width="stretch")
        built = build("dynamics_curves", runs, **figure_of_series, metric=metric, column=column, over=over,
                      x_axis=x_axis)
        show_built(built, key=state.Dynamics.CURVES, width="stretch")
        show_reasons(built.result)
        with st.expander("Numbers per checkpoint and layer"):
            st.dataframe(built.table, hide_index=True, width="stretch")

# ----- similarity to the final checkpoint ------------------------------------------------------------
st.subheader("Similarity of each layer to its final state")
name = series_choice.SIMILARITY_NAMES[similarity]
if ready("similarity", ("similarity", series.key, similarity),
         what=f"{name} of {len(layers)} layers at {len(series)} checkpoints to the final checkpoint",
         button=f"Compute {name} to the final checkpoint",
         compute=lambda bar: actions.compute_to_final(series, similarity, progress=bar)):
    with widgets.user_errors():
        built = build("convergence_curves", runs, **figure_of_series, metric=similarity, x_axis=x_axis)
        show_built(built, key=state.Dynamics.SIMILARITY_CHART, width="stretch")
        st.caption(built.caption + " Raghu et al. (2017) found lower layers converge first (bottom-up).")
        show_reasons(built.result)

# ----- one layer's map across checkpoints ------------------------------------------------------------
st.subheader(f"Layer {layer} across checkpoints")
if ready("map", ("map", series.key, layer),
         what=f"Aligned PCA maps of {layer} at {len(series)} checkpoints",
         button=f"Map {layer} at every checkpoint",
         compute=lambda bar: actions.compute_checkpoint_maps(series, layer, progress=bar)):
    with widgets.user_errors():
        built = build("checkpoint_map", runs, **figure_of_series, layer=layer, color_by=colour)
        show_built(built, key=state.Dynamics.MAP, width="stretch")
        st.caption(built.caption + " Press play, or drag the slider, to watch the inputs move.")
