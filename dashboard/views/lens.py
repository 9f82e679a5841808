"""Logit lens: every layer of a causal LM read through its final norm and unembedding."""

import streamlit as st

from core.export import figure_spec
from core.figures.geometry import kl_curve, lens_heatmap
from dashboard import geometry_services as gs
from dashboard import services, widgets
from dashboard.figure_export import show_figure

TEXT_KEY = "lens_text"  # session state: the text box
REQUEST_KEY = "lens_request"  # session state: (model, text, top_k) last asked for
DEFAULT_MODEL = "smollm2"  # the bundled causal LM
DEFAULT_TEXT = "The capital of France is Paris, and the capital of Germany is"
MAX_COLUMNS = 40  # positions drawn at once; longer inputs get a window slider
MAX_EXAMPLES = 300

widgets.page_header(
    "Logit lens",
    "What each layer of a causal language model would predict if it were the last: the residual stream "
    "read through the model's final norm and unembedding (nostalgebraist 2020), with the KL divergence to "
    "the model's actual output.",
)

runs = services.list_runs()
current = next((r for r in runs if r["key"] == st.session_state.get(widgets.RUN_KEY)), runs[0] if runs else None)
names = list(dict.fromkeys([r["model"]["name"] for r in runs if not gs.is_untrained(r)] + [DEFAULT_MODEL]))
default = current["model"]["name"] if current is not None and current["model"]["name"] in names else DEFAULT_MODEL

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
        if st.session_state.get("lens_example"):
            st.session_state[TEXT_KEY] = st.session_state["lens_example"]

    st.selectbox(f"Pick an input from {services.describe_run(current)}", ["", *texts], key="lens_example",
                 on_change=use_example, format_func=lambda t: t or "(type your own below)")
st.session_state.setdefault(TEXT_KEY, DEFAULT_TEXT)
text = st.text_area("Text", key=TEXT_KEY, height=90,
                    help="Each position's column shows the next token each layer predicts.")
if st.button("Run the logit lens", type="primary", icon=":material/play_arrow:", disabled=not text.strip()):
    st.session_state[REQUEST_KEY] = (model_name, text, top_k)

request = st.session_state.get(REQUEST_KEY)
is_encoder = any(r["model"]["name"] == model_name and not r["model"].get("is_causal_lm") for r in runs)
if request is None and is_encoder:  # say at once why this model cannot be read (core's message)
    request = (model_name, text, top_k)
if request is None:
    widgets.empty_state("Type a text (or pick one from a run) and press Run the logit lens.")
    st.stop()
if request[0] != model_name or request[2] != top_k:  # settings changed since: follow them on the same text
    request = st.session_state[REQUEST_KEY] = (model_name, request[1], top_k)

with widgets.user_errors():
    model = services.load_model(request[0])
    result = gs.lens_result(model, request[0], request[1], request[2])
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
    lens = {"model": request[0], "text": request[1], "top_k": request[2]}
    show_figure(lens_heatmap(result, positions=window), name=f"lens-{request[0]}", key="lens_heatmap",
                spec=figure_spec("lens_heatmap", [], positions=list(window), **lens), width="stretch")
    show_figure(kl_curve(result), name=f"lens-kl-{request[0]}", key="lens_kl", spec=figure_spec("kl_curve", [], **lens),
                width="stretch")
    st.caption(
        f"KL(p_final ‖ p_layer) in nats, mean over the {n} positions with the interquartile band; the last block "
        f"reads 0 by construction. Final norm `{result.params['final_norm']}`, unembedding "
        f"`{result.params['unembedding']}`."
    )
