"""Train SAE: a sparse autoencoder on one layer of a tokens run, with live curves; or load one from SAELens."""

import time

import pandas as pd
import streamlit as st

from core.analysis.sae import ARCHITECTURES, SAEConfig, TrainingHistory
from core.analysis.sae.batches import training_epochs, training_split_tokens
from core.figures.sae import training_curves
from core.recipes.sae import sae_runs
from dashboard import actions, cached, cached_sae, demo_status, run_choice, state, widgets
from dashboard.figure_export import build, show_built

KEYS = state.SaeTrain  # this page's widget keys
ARCH_NAMES = {"topk": "TopK (Gao et al. 2024)", "standard": "ReLU + L1 (Bricken et al. 2023)"}
DEFAULTS = SAEConfig()

widgets.page_header(
    "Train SAE",
    "A sparse autoencoder on one layer's token activations: TopK or ReLU + L1, trained here (on the GPU when "
    "there is one), evaluated on held-out inputs, stored in the workspace in SAELens' format.",
)


def show_saes() -> None:
    """The workspace's SAEs as a table, and the chosen one's numbers and curves."""
    saes = cached_sae.list_saes()
    st.markdown("##### SAEs in the workspace")
    if not saes:
        if not demo_status.waiting_for(("sae",), "This table, with the demo SAE's training curves,"):
            st.caption("None yet: train one above, or load an SAELens folder.")
        return
    table = pd.DataFrame([{
        "SAE": cached_sae.describe(m),
        "FVE": m["evaluation"].get("fve"),
        "L0": m["evaluation"].get("l0"),
        "dead share": m["evaluation"].get("dead_share"),
        "loss increase (nats)": m["evaluation"].get("loss_increase"),
        "stopped early": bool(m.get("training", {}).get("stopped")),
        "created": m.get("created", ""),
        "key": m["key"],
    } for m in saes])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"FVE": st.column_config.NumberColumn(format="%.3f"),
                                "L0": st.column_config.NumberColumn(format="%.1f"),
                                "dead share": st.column_config.NumberColumn(format="%.3f"),
                                "loss increase (nats)": st.column_config.NumberColumn(format="%.3f")})
    keys = [m["key"] for m in saes]
    by_key = {m["key"]: m for m in saes}
    if st.session_state.get(KEYS.DETAILS) not in keys:
        st.session_state[KEYS.DETAILS] = keys[0]
    chosen = st.selectbox("Details of", keys, format_func=lambda k: cached_sae.describe(by_key[k]), key=KEYS.DETAILS)
    with widgets.user_errors():
        entry = cached_sae.open_sae(chosen)
        ev = entry.evaluation
        cols = st.columns(5)
        cols[0].metric("Variance explained", f"{ev.fve:.3f}", help="1 - SSE / SST on held-out inputs' tokens.")
        cols[1].metric("Mean L0", f"{ev.l0:.1f}", help="Active latents per token, held out.")
        held_out = entry.meta.get("source") == "trained"  # an imported SAE is evaluated on every input of the run
        cols[2].metric("Dead on held-out tokens" if held_out else "Dead on all the run's tokens",
                       f"{ev.n_dead:,} ({ev.dead_share:.1%})",
                       help=f"Latents never active on the {ev.n_tokens:,} held-out tokens (the inputs kept out of "
                       "training). The feature gallery counts over every token of the run, so it can count fewer."
                       if held_out else f"Latents never active on any of the run's {ev.n_tokens:,} tokens.")
        if ev.loss_increase is not None:
            cols[3].metric("Next-token loss", f"{ev.loss_with_sae:.3f}", delta=f"{ev.loss_increase:+.3f} nats",
                           delta_color="inverse", help=f"With the layer replaced by the reconstruction; clean "
                           f"{ev.loss_clean:.3f}, zero-ablated {ev.loss_zero_ablation:.3f}.")
        if ev.loss_recovered is not None:
            cols[4].metric("Loss recovered", f"{ev.loss_recovered:.1%}",
                           help="(L_zero - L_sae) / (L_zero - L_clean): 100% = the SAE loses nothing.")
        stopped = entry.meta.get("training", {}).get("stopped")
        if stopped:
            st.warning(f"Training stopped early: {stopped}", icon=":material/warning:")
        if entry.history.tokens:
            show_built(build("sae_training_curves", sae_runs(entry), sae=entry.key), key=KEYS.HISTORY,
                       width="stretch")
        st.caption(f"Stored in SAELens' format (cfg.json + sae_weights.safetensors) at `{entry.path}`; "
                   f"{ev.n_tokens:,} held-out tokens.")
        st.page_link("views/sae_gallery.py", label="Browse its features in the gallery", icon=":material/grid_view:")
        state.set_sae_key(chosen)


runs = cached.list_runs()
tokens_key = run_choice.choose_run(runs, state.run_key(), run_choice.TOKENS)
if tokens_key is None:  # SAEs train on token activations: say which run to extract
    current = next((r for r in runs if r["key"] == state.run_key()), runs[0] if runs else None)
    widgets.empty_state(run_choice.TOKENS.hint(current), page=widgets.WORKSPACE_PAGE, label="Go to Workspace")
    show_saes()
    st.stop()
state.set_run_key(tokens_key)
acts = widgets.current_run(where=run_choice.is_tokens)

layers = acts.layer_names
with st.sidebar:
    st.markdown("##### Layer")
    layer = st.selectbox("Layer", layers, index=len(layers) // 2, key=KEYS.LAYER,
                         format_func=lambda name: widgets.layer_label(name, layers))
d_in = acts.dim(layer)
st.caption(f"{widgets.describe_run(acts.meta)} · {layer} · d = {d_in} · {int(acts.lengths.sum()):,} tokens")

with st.form(KEYS.FORM):
    architecture = st.radio("Architecture", list(ARCHITECTURES), format_func=ARCH_NAMES.get, horizontal=True,
                            key=KEYS.ARCHITECTURE, help="; ".join(f"{a}: {d}" for a, d in ARCHITECTURES.items()))
    c1, c2, c3 = st.columns(3)
    expansion = c1.number_input("Width (× d)", min_value=0.25, max_value=256.0, value=float(DEFAULTS.expansion),
                                step=1.0, key=KEYS.EXPANSION, help="Latents = width × d. At least 1.")
    k = c2.number_input("k (TopK)", min_value=1, max_value=100_000, value=DEFAULTS.k, step=1, key=KEYS.TOP_K,
                        help="Latents kept per token; at most the width.")
    l1 = c3.number_input("L1 coefficient (ReLU)", min_value=0.0, value=float(DEFAULTS.l1_coefficient), step=0.5,
                         key=KEYS.L1, help="Weight of the sparsity penalty (decoder-norm weighted).")
    c4, c5, c6, c7 = st.columns(4)
    lr = c4.number_input("Learning rate", min_value=1e-6, max_value=1.0, value=DEFAULTS.lr, format="%.5f",
                         key=KEYS.LR)
    batch_size = c5.number_input("Batch size (tokens)", min_value=1, max_value=65_536, value=DEFAULTS.batch_size,
                                 step=256, key=KEYS.BATCH)
    training_tokens = c6.number_input("Training tokens", min_value=1, value=DEFAULTS.training_tokens, step=100_000,
                                      key=KEYS.TOKENS, help="The run's training split is repeated as needed.")
    seed = c7.number_input("Seed", min_value=0, value=DEFAULTS.seed, step=1, key=KEYS.SEED)
    with st.expander("More options"):
        normalize = st.toggle("Normalise inputs to mean norm √d (SAELens)", value=True, key=KEYS.NORMALIZE)
        exclude_first = st.toggle("Leave each input's first token out", value=DEFAULTS.exclude_first_token,
                                  key=KEYS.EXCLUDE_FIRST,
                                  help="First tokens (attention sinks, [CLS]) have far larger norms than the rest.")
        revive = st.toggle("Revive dead latents (AuxK / resampling)", value=DEFAULTS.revive_dead, key=KEYS.REVIVE)
        held_out = st.slider("Held-out inputs", 0.05, 0.5, DEFAULTS.held_out_fraction, 0.05, key=KEYS.HELD_OUT)
        dead_window = st.number_input("Dead after (tokens without firing)", min_value=1, value=DEFAULTS.dead_window,
                                      step=1000, key=KEYS.DEAD_WINDOW)
    split = training_split_tokens(acts, held_out_fraction=float(held_out), seed=int(seed),
                                  exclude_first_token=exclude_first) if acts.n_inputs >= 2 else 0
    epochs = training_epochs(int(training_tokens), int(batch_size), split) if split else 0.0
    if epochs > 1:  # the budget outgrows the run: say so before training repeats the same tokens
        st.info(f"The training split holds {split:,} tokens (the inputs not held out"
                f"{', first tokens left out' if exclude_first else ''}); {int(training_tokens):,} training tokens "
                f"repeat it about {epochs:,.1f} times (epochs). Extract more inputs for fresh tokens.",
                icon=":material/repeat:")
    submitted = st.form_submit_button("Train SAE", type="primary", icon=":material/play_arrow:")

if submitted:
    with widgets.user_errors():
        config = SAEConfig(
            architecture=architecture, expansion=float(expansion), k=int(k), l1_coefficient=float(l1), lr=float(lr),
            batch_size=int(batch_size), training_tokens=int(training_tokens), seed=int(seed),
            normalize_activations="expected_average_only_in" if normalize else "none",
            held_out_fraction=float(held_out), exclude_first_token=exclude_first, revive_dead=revive,
            dead_window=int(dead_window),
        )
        config.check_for(d_in)
        stop = st.empty()
        stop.button("Stop training", icon=":material/stop:", key=KEYS.STOP,
                    help="Stops at the next step; nothing is written to the workspace.")
        bar = st.progress(0.0, text="Training...")
        chart = st.empty()
        live = TrainingHistory()
        last_draw = [0.0]

        def report(step: int, total: int, metrics) -> None:
            for name, value in metrics.items():
                getattr(live, name).append(value)
            bar.progress(step / max(total, 1), text=f"Step {step:,} of {total:,} · loss {metrics['loss']:.4g} · "
                         f"L0 {metrics['l0']:.1f} · FVE {metrics['fve']:.3f}")
            if time.time() - last_draw[0] > 1.0 or step == total:
                chart.plotly_chart(training_curves(live, title="Training (live)"), width="stretch")
                last_draw[0] = time.time()

        entry = actions.train_sae(acts.meta, layer, config, progress=report)
        for placeholder in (stop, bar, chart):
            placeholder.empty()
        st.session_state[KEYS.DETAILS] = entry.key
        st.success(f"Trained {entry.label}: held-out FVE {entry.evaluation.fve:.3f}, L0 {entry.evaluation.l0:.1f}.",
                   icon=":material/check_circle:")

with st.expander("Load an SAE trained elsewhere (SAELens folder: cfg.json + sae_weights.safetensors)"):
    folder = st.text_input("Folder", placeholder="/path/to/sae", key=KEYS.IMPORT_FOLDER)
    import_first = st.toggle("Leave each input's first token out", value=True, key=KEYS.IMPORT_EXCLUDE_FIRST)
    if st.button("Load SAELens SAE", icon=":material/upload:", disabled=not folder.strip(), key=KEYS.IMPORT):
        with widgets.user_errors():
            entry = actions.import_sae(folder, acts.meta, layer, exclude_first_token=import_first)
            st.session_state[KEYS.DETAILS] = entry.key
            st.success(f"Loaded {entry.label}: FVE {entry.evaluation.fve:.3f} on this run's tokens.",
                       icon=":material/check_circle:")

show_saes()
