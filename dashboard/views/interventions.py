"""Interventions: make a direction at a layer, steer a causal LM along it, erase a concept and probe what is left."""

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from core.interventions.directions import class_names
from core.interventions.records import ERASERS, POSITIONS, SOURCES
from core.interventions.stored import export_direction, list_directions, load_direction, save_direction
from core.recipes.interventions import erasure_result, steering_result
from dashboard import cached, run_choice, state, widgets
from dashboard import interventions_forms as forms
from dashboard.figure_export import build, show_built
from dashboard.live_progress import LiveProgress, stopped

Keys = forms.Keys

widgets.page_header(
    "Interventions",
    "From reading to writing: make a direction at a layer (a probe's weight, a difference of class means, the "
    "first principal component of contrast pairs, an SAE feature), add it to a causal LM's residual stream while "
    "it generates (activation addition, Turner et al. 2023), or erase a concept at a layer (LEACE, Belrose et al. "
    "2023) and see which probes still read it.",
)

runs = widgets.workspace_runs(empty="No runs yet: interventions start from a stored run. Extract one first "
                                    "(`python -m core extract --model smollm2 --data demo:sentences`).")
by_key = {r["key"]: r for r in runs}
store = cached.store()


def run_select(label: str, keys: list[str], default: str | None, key: str) -> dict:
    """A select box over `keys` (runs), opening on `default`."""
    index = keys.index(default) if default in keys else 0
    chosen = st.selectbox(label, keys, index=index, key=key, format_func=lambda k: widgets.describe_run(by_key[k]))
    return by_key[chosen]


def layer_select(acts, key: str, default: str | None = None) -> str:
    layers = acts.layer_names
    default = default if default in layers else forms.middle_layer(layers)
    return st.selectbox("Layer", layers, index=layers.index(default), key=key,
                        format_func=lambda layer: widgets.layer_label(layer, layers))


def classes_of(acts, label: str) -> list[str]:
    return class_names(acts.labels(label))


# ----- Directions ----------------------------------------------------------------------------------------
def directions_tab() -> None:
    run = run_select("Run", [r["key"] for r in runs], run_choice.choose_run(runs, state.run_key()), "iv_dir_run")
    acts = widgets.open_run_or_error(run)
    if acts is None:
        return
    c1, c2 = st.columns(2)
    with c1:
        layer = layer_select(acts, "iv_dir_layer")
        source = st.selectbox("Source", SOURCES, format_func=forms.SOURCE_LABELS.get, key="iv_dir_source",
                              help="probe: a logistic probe's weight (class vs rest) in raw activation units; mean "
                                   "difference: mean(class) - mean(other); contrast pairs PCA: first component of "
                                   "paired differences (RepE); SAE feature: a decoder row.")
    spec: dict = {}
    with c2:
        if source == "sae_feature":
            from core.analysis.sae import list_saes

            saes = [s for s in list_saes(store) if s.get("run") == run["key"]]
            if not saes:
                widgets.empty_state("No SAE is stored for this run: train one on the Train SAE page, or pick "
                                    "another source.", page="views/sae_train.py", label="Go to Train SAE")
                return
            layers_of = {s["key"]: s.get("layer", "") for s in saes}
            spec["sae_key"] = st.selectbox("SAE (its own layer)", list(layers_of), key="iv_dir_sae",
                                           format_func=lambda k: f"{k[:8]} @ {layers_of[k]}")
            spec["feature"] = int(st.number_input("Feature", min_value=0, value=0, step=1, key="iv_dir_feature"))
        else:
            if not acts.label_columns:
                widgets.empty_state("This run has no label columns: extract a labelled dataset (e.g. demo:sentences).")
                return
            label = st.selectbox("Label", acts.label_columns, key="iv_dir_label")
            classes = classes_of(acts, label)
            positive = st.selectbox("Class (positive)", classes, key="iv_dir_positive")
            others = [c for c in classes if c != positive]
            negative = st.selectbox("Against", [None, *others], key="iv_dir_negative",
                                    format_func=lambda c: "every other class" if c is None else c,
                                    disabled=source == "probe", help="The probe reads its class against the rest.")
            spec.update(label=label, positive=positive, negative=None if source == "probe" else negative)
        name = st.text_input("Name (optional)", key="iv_dir_name")
    if st.button("Make and store direction", type="primary", icon=":material/add:", key="iv_dir_make"):
        with widgets.user_errors(about="Direction"), st.spinner("Making the direction..."):
            from core.interventions.directions import make_direction

            direction = make_direction(source, acts, layer, spec.get("label"), spec.get("positive"),
                                       spec.get("negative"), store=store, sae_key=spec.get("sae_key"),
                                       feature=spec.get("feature"), name=name or None)
            st.session_state[Keys.DIRECTION_MADE] = save_direction(store, direction)
            st.success(f"Stored direction “{direction.name}” (width {direction.width}, scale {direction.scale:.3g}).")
    stored_directions()


def stored_directions() -> None:
    st.markdown("##### Stored directions")
    directions = list_directions(store)
    if not directions:
        widgets.empty_state("No direction is stored yet: pick a run, layer, source and classes above and press "
                            "Make and store direction.")
        return
    rows = forms.direction_rows(directions)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="iv_dir_table")
    keys = [key for key, _ in directions]
    names = {key: d.name for key, d in directions}
    chosen = st.selectbox("Download", keys, key="iv_dir_download_pick", format_func=names.get)

    def exported() -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            return export_direction(load_direction(store, chosen), Path(folder) / "direction").read_bytes()

    st.download_button("Download as safetensors", data=exported, file_name=f"direction-{chosen[:8]}.safetensors",
                       mime="application/octet-stream", on_click="ignore", icon=":material/download:",
                       key="iv_dir_download")


# ----- Steer ---------------------------------------------------------------------------------------------
def steer_tab() -> None:
    causal = [r for r in runs if run_choice.is_causal_lm(r)]
    if not causal:
        widgets.empty_state(forms.steer_hint(None), page=widgets.WORKSPACE_PAGE, label="Go to Workspace")
        return
    causal_models = sorted({r["model"]["name"] for r in causal})
    directions = list_directions(store)
    default_run = forms.steer_run(runs, state.run_key())
    run = run_select("Run (the readout probe is fitted on it)", [r["key"] for r in causal], default_run, "iv_st_run")
    acts = widgets.open_run_or_error(run)
    if acts is None:
        return
    if not directions:
        label, positive, negative = forms.steer_default_classes(acts.label_columns, lambda c: classes_of(acts, c))
        layer = forms.middle_layer(acts.layer_names)
        widgets.empty_state("No direction is stored yet: make one on the Directions tab"
                            + (f", or make “{label}: {positive} - {negative}” at {layer} here." if label else "."))
        if label and st.button("Make the mean-difference direction", key="iv_st_quick", icon=":material/add:"):
            from core.interventions.directions import mean_difference_direction

            with widgets.user_errors(about="Direction"):
                save_direction(store, mean_difference_direction(acts, layer, label, positive, negative))
                st.rerun()
        return
    keys = [key for key, _ in directions]
    found = dict(directions)
    same_model = [k for k in keys if found[k].model.get("name") == run["model"]["name"]]
    made = st.session_state.get(Keys.DIRECTION_MADE)
    default = made if made in same_model else (same_model[0] if same_model else keys[0])
    chosen = st.selectbox("Direction", keys, index=keys.index(default), key="iv_st_direction",
                          format_func=lambda k: f"{found[k].name} · {found[k].model.get('name')}")
    direction = found[chosen]
    with widgets.user_errors(about="Steering"):
        forms.check_steerable(direction, causal_models)
    if not direction.model.get("is_causal_lm"):
        return
    st.session_state.setdefault(Keys.PROMPTS, forms.default_prompts(acts.texts))
    st.session_state.setdefault(Keys.ALPHAS, forms.DEFAULT_ALPHAS)
    c1, c2 = st.columns([3, 2])
    prompts_text = c1.text_area("Prompts (one per line)", key=Keys.PROMPTS, height=110)
    with c2:
        alphas_text = st.text_input("Alphas", key=Keys.ALPHAS,
                                    help="Comma-separated, in units of the median norm of the prompts' tokens at the "
                                         "layer; 0 is the unsteered model.")
        position = st.radio("Add at", POSITIONS, horizontal=True, key="iv_st_position",
                            format_func={"all": "all positions", "last": "last position"}.get)
        max_new = int(st.number_input("Max new tokens", 1, 200, 20, key="iv_st_tokens"))
    labels = acts.label_columns
    p = direction.provenance
    r1, r2 = st.columns(2)
    readout_label = r1.selectbox("Readout label", [None, *labels], key="iv_st_readout_label",
                                 index=1 + labels.index(p["label"]) if p.get("label") in labels else 0,
                                 format_func=lambda c: "(no readout)" if c is None else c)
    readout_class = None
    if readout_label:
        classes = classes_of(acts, readout_label)
        readout_class = r2.selectbox("Readout class", classes, key="iv_st_readout_class",
                                     index=classes.index(p["positive"]) if p.get("positive") in classes else 0)
    if st.button("Steer", type="primary", icon=":material/play_arrow:", key="iv_st_go"):
        with widgets.user_errors(about="Steering"):
            request = (chosen, run["key"], tuple(forms.parse_prompts(prompts_text)),
                       tuple(forms.parse_alphas(alphas_text)), position, max_new, readout_label, readout_class)
            st.session_state[Keys.STEER_REQUEST] = request
            st.session_state.pop(Keys.STEER_STOPPED, None)
    request = st.session_state.get(Keys.STEER_REQUEST)
    if request is None:
        st.caption("Press Steer: each alpha generates greedily from every prompt (reproducible).")
        return
    show_steering(request)


def show_steering(request: tuple) -> None:
    chosen, run_key, prompts, alphas, position, max_new, readout_label, readout_class = request
    params = {"direction": chosen, "prompts": list(prompts), "alphas": list(alphas), "position": position,
                  "max_new_tokens": max_new, "readout_label": readout_label, "readout_class": readout_class}
    if stopped(Keys.STEER_STOPPED, request, what="Steering", retry="Steer again"):
        return
    with widgets.user_errors(about="Steering"):
        bar = LiveProgress("Steering", key=Keys.STEER_STOPPED, request=request, describe=lambda d, t, w: w)
        try:
            result = steering_result(cached.recipe_context(), [run_key], progress=bar, **params)
        finally:
            bar.empty()
        show_built(build("steering_continuations", [run_key], **params), key="iv_st_continuations", width="stretch")
        c1, c2 = st.columns(2)
        with c1:
            show_built(build("steering_kl", [run_key], **params), key="iv_st_kl", width="stretch")
        with c2:
            if readout_label:
                show_built(build("steering_readout", [run_key], **params), key="iv_st_readout", width="stretch")
            else:
                st.caption("Pick a readout label to see what a probe reads from the steered stream.")
        show_built(build("steering_tokens", [run_key], **params), key="iv_st_tokens_chart", width="stretch")
        st.caption(f"alpha = 1 adds {result.scale:.3g} (the median norm of the prompts' tokens at the layer) x the unit direction at "
                   f"{result.layer}; greedy decoding, {max_new} new tokens.")


# ----- Erase ---------------------------------------------------------------------------------------------
def erase_tab() -> None:
    run = run_select("Run", [r["key"] for r in runs], forms.erase_run(runs, state.run_key()), "iv_er_run")
    acts = widgets.open_run_or_error(run)
    if acts is None:
        return
    if not acts.label_columns:
        widgets.empty_state("This run has no label columns: pick a run of a labelled dataset (e.g. demo:sentences).")
        return
    c1, c2 = st.columns(2)
    with c1:
        layer = layer_select(acts, "iv_er_layer")
        labels = acts.label_columns
        label = st.selectbox("Concept (label)", labels, key="iv_er_label",
                             index=labels.index(forms.ERASE_LABEL) if forms.ERASE_LABEL in labels else 0)
    with c2:
        method = st.selectbox("Method", ERASERS, format_func=forms.METHOD_LABELS.get, key="iv_er_method")
        later_all = forms.later_layers(acts.layer_names, layer)
        later = st.multiselect("Later layers probed", later_all, default=later_all, key=f"iv_er_later_{layer}")
    if st.button("Erase", type="primary", icon=":material/play_arrow:", key="iv_er_go"):
        st.session_state[Keys.ERASE_REQUEST] = (run["key"], layer, label, method, tuple(later))
        st.session_state.pop(Keys.ERASE_STOPPED, None)
    request = st.session_state.get(Keys.ERASE_REQUEST)
    if request is None:
        st.caption("Press Erase: the eraser is fitted on the run, then probes are cross-validated before and after.")
        return
    show_erasure(request)


def show_erasure(request: tuple) -> None:
    run_key, layer, label, method, later = request
    params = {"layer": layer, "label": label, "method": method, "later_layers": list(later)}
    if stopped(Keys.ERASE_STOPPED, request, what="Erasure", retry="Erase again"):
        return
    with widgets.user_errors(about="Erasure"):
        bar = LiveProgress("Erasing", key=Keys.ERASE_STOPPED, request=request)
        try:
            result = erasure_result(cached.recipe_context(), [run_key], progress=bar, **params)
        finally:
            bar.empty()
        m = st.columns(4)
        m[0].metric(f"Accuracy at {layer}", f"{result.accuracy_after[0]:.3f}",
                    f"{result.accuracy_after[0] - result.accuracy_before[0]:+.3f}", delta_color="off")
        m[1].metric("Chance", f"{result.chance:.3f}")
        m[2].metric("Mean squared change", f"{result.mean_squared_change:.4g}",
                    help="mean over inputs of ||x - x'||² at the erased layer")
        if result.loss_before == result.loss_before:  # NaN for encoders
            m[3].metric("Next-token loss (nats)", f"{result.loss_after:.3f}",
                        f"{result.loss_after - result.loss_before:+.3f}", delta_color="inverse")
        c1, c2 = st.columns([3, 2])
        with c1:
            built = build("erasure_accuracy", [run_key], **params)
            show_built(built, key="iv_er_accuracy", width="stretch")
        with c2:
            show_built(build("erasure_change", [run_key], **params), key="iv_er_change", width="stretch")
        st.caption(built.caption)


tabs = st.tabs(["Directions", "Steer", "Erase"])
with tabs[0]:
    directions_tab()
with tabs[1]:
    steer_tab()
with tabs[2]:
    erase_tab()
