"""Trajectory: one input's path through representation space, token by token, at each layer."""

import numpy as np
import streamlit as st

from core.analysis.geometry import CURVATURE_VARIANTS
from dashboard import actions, cached, run_choice, state, widgets
from dashboard.figure_export import build, show_built

widgets.page_header(
    "Trajectory",
    "One input's token trajectory at a layer, in the 2-D PCA plane of its own tokens, with the turning angle "
    "at every token; and how curved that trajectory is at each layer.",
)

runs = cached.list_runs()
if (tokens_key := run_choice.choose_run(runs, state.run_key(), run_choice.TOKENS)) is not None:
    state.set_run_key(tokens_key)
current = next((r for r in runs if r["key"] == state.run_key()), runs[0] if runs else None)
acts = widgets.current_run(where=run_choice.is_tokens, empty=run_choice.TOKENS.hint(current))

texts = acts.texts
lengths = acts.lengths
with st.sidebar:
    st.markdown("##### Input")
    search = st.text_input("Find inputs containing", placeholder="e.g. rain").strip().lower()
    candidates = [i for i, t in enumerate(texts) if search in t.lower()] if search else list(range(len(texts)))
    if not candidates:
        st.warning(f"No input contains “{search}”.")
        candidates = list(range(len(texts)))
    index = st.selectbox(
        "Input", candidates,
        format_func=lambda i: f"{i} · {texts[i][:70]}{'…' if len(texts[i]) > 70 else ''} ({int(lengths[i])} tokens)",
    )
    variant = st.radio("Curvature variant", list(CURVATURE_VARIANTS), horizontal=True,
                       help="signed: arccos of the step cosine, 0-180° (Hosseini & Fedorenko). "
                       "abs: arccos of its absolute value, 0-90° (Skean et al.).")
    skip_first = st.toggle(
        "Leave the first token out of the picture", value=bool(acts.meta["model"].get("is_causal_lm")),
        help="Trained causal LMs give the first token huge activations (the attention sink); they fill the "
        "first principal component and squash the rest of the path to a dot. Angles and curvature still "
        "use every token.",
    )

layers = acts.layer_names
layer = st.select_slider("Layer", options=layers, value=layers[len(layers) // 2],
                         format_func=lambda name: widgets.layer_label(name, layers))
n_tokens = int(lengths[index])
st.markdown(f"**Input {index}:** {texts[index]}")
if n_tokens < 3:
    st.warning(
        f"Input {index} has {n_tokens} token(s): curvature needs at least 3 (an angle between two steps), "
        "so it is NaN (undefined) at every layer. Pick a longer input.",
        icon=":material/warning:",
    )

with widgets.user_errors():
    per_layer = cached.input_curvature_by_layer(acts.key, index, variant)
    here = per_layer[layers.index(layer)]
    c1, c2, c3 = st.columns(3)
    c1.metric("Tokens", n_tokens)
    c2.metric(f"Curvature at {layer}", "undefined" if np.isnan(here) else f"{np.degrees(here):.1f}°")
    finite = per_layer[np.isfinite(per_layer)]
    c3.metric("Change, first to last layer",
              f"{np.degrees(finite[-1] - finite[0]):+.1f}°" if len(finite) > 1 else "undefined",
              help="Straightening shows as a negative change (Hosseini & Fedorenko 2023).")

    left, right = st.columns(2, gap="medium")
    with left:
        title = f"{acts.model_name} · input {index} at {layer}"
        built = build("trajectory", [acts.key], layer=layer, index=int(index), variant=variant,
                      skip_first=bool(skip_first), title=title)
        show_built(built, key=state.Trajectory.PATH, width="stretch")
        st.caption("Arrows follow token order. Turning angles (hover) are measured in the full space; the "
                   "2-D PCA picture can bend them.")
    with right:
        reference = None
        if (acts.key, variant) in state.computed(state.Trajectory.COMPUTED):
            options = cached.params_key({"curvature_variant": variant})
            reference = cached.geometry_result(acts.key, ("curvature",), options)
        title = f"Curvature of input {index} by layer"
        built = build("curvature_by_layer", [acts.key], index=int(index), variant=variant,
                      reference=reference is not None, input_label=f"input {index}", title=title)
        show_built(built, key=state.Trajectory.CURVATURE, width="stretch")
        if reference is None:
            if st.button("Add the mean over all inputs", help="Computes curvature for every input and layer "
                         "(stored in the workspace)."):
                bar = widgets.ProgressBar("Curvature of every input...")
                actions.compute_geometry(acts.key, ("curvature",), {"curvature_variant": variant}, progress=bar)
                state.computed(state.Trajectory.COMPUTED).add((acts.key, variant))
                st.rerun()
        elif reference.reasons.get("curvature"):
            st.caption(f"All inputs: {reference.reasons['curvature']}")
