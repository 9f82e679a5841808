"""Logit lens: every layer of a causal LM read through its final norm and unembedding."""

import streamlit as st

from dashboard import actions, cached, demo_status, planning, run_choice, state, widgets
from dashboard.figure_export import build, show_built
from dashboard.live_progress import LiveProgress, is_stopped, stopped

DEFAULT_MODEL = "smollm2"  # the bundled causal LM
DEFAULT_TEXT = "The capital of France is Paris, and the capital of Germany is"
MAX_COLUMNS = 40  # positions drawn at once; longer inputs get a window slider
MAX_EXAMPLES = 300
LENS_STOPPED = "lens_stopped"  # session state: the lens request a Cancel click stopped

widgets.page_header(
    "Logit lens",
    "What each layer of a causal language model would predict if it were the last: the residual stream "
    "read through the model's final norm and unembedding (nostalgebraist 2020), with the KL divergence to "
    "the model's actual output.",
)

runs = cached.list_runs()
current = next((r for r in runs if r["key"] == state.run_key()), runs[0] if runs else None)
names, _ = planning.lens_models(runs, current, DEFAULT_MODEL)
default = run_choice.lens_model(runs, state.run_key(), DEFAULT_MODEL)  # a causal LM, the current run's if it is one

with st.sidebar:
    st.markdown("##### Logit lens")
    model_name = st.selectbox(
        "Model", names, index=names.index(default),
        help="The lens needs a causal language model (smollm2 is bundled). Models come from the workspace's runs.",
    )
    top_k = st.slider("Top tokens per cell (hover)", 1, 10, 5)

if current is not None:
    acts = widgets.open_run_or_error(current)
    texts = acts.texts[:MAX_EXAMPLES] if acts is not None else []

    def use_example() -> None:
        if st.session_state.get(state.Lens.EXAMPLE):
            st.session_state[state.Lens.TEXT] = st.session_state[state.Lens.EXAMPLE]

    st.selectbox(f"Pick an input from {widgets.describe_run(current)}", ["", *texts], key=state.Lens.EXAMPLE,
                 on_change=use_example, format_func=lambda t: t or "(type your own below)")
st.session_state.setdefault(state.Lens.TEXT, DEFAULT_TEXT)
text = st.text_area("Text", key=state.Lens.TEXT, height=90,
                    help="Each position's column shows the next token each layer predicts.")
if st.button("Run the logit lens", type="primary", icon=":material/play_arrow:", disabled=not text.strip()):
    st.session_state[state.Lens.REQUEST] = (model_name, text, top_k)
    st.session_state.pop(LENS_STOPPED, None)  # asked again: an earlier stop is over

request = st.session_state.get(state.Lens.REQUEST)
causal = any(run_choice.is_causal_lm(r) and r["model"]["name"] == model_name for r in runs)
if request is None and (causal or planning.is_encoder(runs, model_name)):  # read it at once, or say why it cannot be
    request = (model_name, text, top_k)
if request is None and model_name == DEFAULT_MODEL:  # the demo's smollm2 run may still be on its way
    demo_status.waiting_for(("smollm2",), "The logit lens of smollm2")
if request is None:
    widgets.empty_state("Type a text (or pick one from a run) and press Run the logit lens.")
    st.stop()
if request[0] != model_name or request[2] != top_k:  # settings changed since: follow them on the same text
    request = st.session_state[state.Lens.REQUEST] = (model_name, request[1], top_k)

with widgets.user_errors():
    lens = {"model": request[0], "text": request[1], "top_k": request[2]}
    asked_again = is_stopped(LENS_STOPPED, request)
    if stopped(LENS_STOPPED, request, what=f"The logit lens of {request[0]}", retry="Run the logit lens again"):
        st.stop()
    if asked_again:  # started again: without the note that it was stopped
        st.rerun()
    bar = LiveProgress(f"Logit lens of {request[0]}", key=LENS_STOPPED, request=request,
                       describe=lambda done, total, what: what)
    try:
        actions.compute_lens(**lens, progress=bar)  # instant once computed: the figures below read it
    finally:
        bar.empty()
    kl = build("kl_curve", [], **lens)  # the heatmap below reads the same lens result
    result = kl.result
    n = result.n_positions
    c1, c2, c3 = st.columns(3)
    c1.metric("Tokens", n)
    c2.metric("Layers read", result.n_layers)
    c3.metric("Model's next token", repr(result.final_top_tokens[-1]),
              help="The model's own prediction after the last input token.")
    if result.params.get("truncated"):
        st.caption(f"The text was cut to {result.params['max_length']} tokens.")
    window = (0, n)
    if n > MAX_COLUMNS:
        start = st.slider("First position shown", 0, n - MAX_COLUMNS, n - MAX_COLUMNS,
                          help=f"{n} positions; {MAX_COLUMNS} are drawn at a time.")
        window = (start, start + MAX_COLUMNS)
    show_built(build("lens_heatmap", [], positions=list(window), **lens), key=state.Lens.HEATMAP, width="stretch")
    show_built(kl, key=state.Lens.KL, width="stretch")
    st.caption(
        f"KL(p_final ‖ p_layer) in nats, mean over the {n} positions with the interquartile band; the last block "
        f"reads 0 by construction. Final norm `{result.params['final_norm']}`, unembedding "
        f"`{result.params['unembedding']}`."
    )
