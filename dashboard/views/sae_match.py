"""Feature matching: pair the latents of two SAEs over the same inputs and compare the pairs side by side."""

import numpy as np
import streamlit as st

from core.analysis.features import DEFAULT_MATCHING_VARIANT, MATCHING_VARIANTS
from core.recipes.sae import sae_runs
from dashboard import actions, cached_sae, demo_status, state, widgets
from dashboard.feature_card import render_feature_card
from dashboard.figure_export import build, show_built

MAX_PAIRS_LISTED = 500

widgets.page_header(
    "Feature matching",
    "Which latents two SAEs share (Lan et al. 2024): run both on the same inputs, pair each latent of B with its "
    "most-correlated latent of A, compare against random pairings, and measure how alike the paired decoder "
    "directions are (SVCCA, RSA).",
)

saes = cached_sae.list_saes()
if len(saes) < 2 and demo_status.waiting_for(("sae", "sae-seed1", "matching"), "Feature matching"):
    st.stop()
if len(saes) < 2:
    widgets.empty_state(
        "Feature matching needs two SAEs trained on runs over the same inputs (two models, two layers or two "
        "seeds): train them on the Train SAE page.",
        page="views/sae_train.py",
        label="Train an SAE",
    )
    st.stop()
keys = [m["key"] for m in saes]
by_key = {m["key"]: m for m in saes}


def partner_default(a: str) -> int:
    """Index of a sensible B for A: another SAE on the same inputs, preferring another model."""
    same = [k for k in keys if k != a and by_key[k].get("dataset_fingerprint") == by_key[a].get("dataset_fingerprint")]
    other_model = [k for k in same if by_key[k].get("model") != by_key[a].get("model")]
    pick = (other_model or same or [k for k in keys if k != a])[0]
    return keys.index(pick)


with st.sidebar:
    st.markdown("##### SAEs")
    a = st.selectbox("SAE A", keys, index=0, format_func=lambda k: cached_sae.describe(by_key[k]),
                     key=state.Matching.A)
    b = st.selectbox("SAE B", keys, index=partner_default(a), format_func=lambda k: cached_sae.describe(by_key[k]),
                     key=state.Matching.B)
    variants = list(MATCHING_VARIANTS)
    variant = st.selectbox(
        "Conventions", variants, index=variants.index(DEFAULT_MATCHING_VARIANT), key=state.Matching.VARIANT,
        help="layerscope: Pearson r; latents that never fire are left out; random live partners. lan2024 "
        "(wlg1/univ_feat_geom): z-scores with ddof=1, dead latents count as r = 0, only pairs above r = 0.1 "
        "are compared, and the baseline shuffles the pairs. See docs/sae.md.",
    )

if a == b:
    st.warning("Pick two different SAEs: an SAE matched with itself pairs every latent with itself.",
               icon=":material/warning:")
    st.stop()
if by_key[a].get("dataset_fingerprint") != by_key[b].get("dataset_fingerprint"):
    widgets.show_error(
        f"SAE A was trained on {by_key[a].get('dataset')} and SAE B on {by_key[b].get('dataset')}: matching needs "
        "both SAEs' runs to cover the same inputs",
        hint="Extract the second model on the same dataset.",
    )
    st.stop()

if not cached_sae.matching_ready(a, b, variant) and demo_status.waiting_for(("matching",), "Feature matching"):
    st.stop()
if not cached_sae.matching_ready(a, b, variant):
    st.caption("Encodes the same inputs with both SAEs, correlates every pair of latents and stores the result; "
               "the feature statistics of both SAEs (for the cards) are computed too if missing.")
    if not st.button("Match features", type="primary", icon=":material/play_arrow:"):
        st.stop()
    with widgets.user_errors():
        bar = widgets.ProgressBar("Matching...")
        for side, key in (("A", a), ("B", b)):
            if not cached_sae.stats_ready(key):
                step = bar.step(0, 1 / 3, lambda d, t, what, s=side: f"Statistics of {s}: {what}")
                actions.compute_stats(key, progress=step)
        actions.compute_matching(a, b, variant, progress=bar.step(1 / 3, 2 / 3))
        bar.empty()
    if not cached_sae.matching_ready(a, b, variant):
        st.stop()

with widgets.user_errors():
    result = cached_sae.matching(a, b, variant)
    for key in (a, b):
        if not cached_sae.stats_ready(key):
            actions.compute_stats(key)
    stats_a, stats_b = cached_sae.stats(a), cached_sae.stats(b)
    c1, c2, c3, c4 = st.columns(4)
    counted = ("every latent of B (dead ones at r = 0)" if variant == "lan2024" else "each live latent of B")
    c1.metric("Mean paired correlation", f"{result.mean_paired:.3f}",
              delta=f"{result.mean_paired - result.mean_random:+.3f} vs random", delta_color="normal",
              help=f"Mean r of {counted} with its best partner in A; random pairings give "
              f"{result.mean_random:.3f} ± {result.random_std:.3f}.")
    for column, label, paired, random, what in (
        (c2, "SVCCA of paired decoders", result.svcca_paired, result.svcca_random,
         "Mean canonical correlation between the paired decoder directions (one-to-one pairs)"),
        (c3, "RSA of paired decoders", result.rsa_paired, result.rsa_random,
         "Spearman correlation of the two RDMs of the paired decoder directions"),
    ):
        defined = not (np.isnan(paired) or np.isnan(random))
        column.metric(label, "undefined" if np.isnan(paired) else f"{paired:.3f}",
                      delta=f"{paired - random:+.3f} vs random" if defined else None, delta_color="normal",
                      help=f"{what}; randomly paired directions give {random:.3f}.")
    c4.metric("One-to-one pairs", f"{result.n_pairs:,}",
              help=f"Pairs whose decoder directions are compared (mean r {result.mean_pairs:.3f}). Live latents: "
              f"{result.n_alive_a:,} in A, {result.n_alive_b:,} in B.")
    level = ("tokens (both models tokenise the inputs alike)" if result.level == "tokens"
             else "inputs (the tokenisers differ: each input's maximum activation is correlated)")
    st.caption(f"Correlations over {result.n_rows:,} {level}. Conventions: {variant} "
               f"({MATCHING_VARIANTS[variant]}).")
    for name, reason in result.reasons.items():
        st.caption(f"{name}: undefined — {reason}")
    histogram = build("sae_feature_matching", sae_runs(cached_sae.open_sae(a), cached_sae.open_sae(b)), saes=[a, b],
                      variant=variant)
    show_built(histogram, key=state.Matching.HISTOGRAM, width="stretch")

    table = result.table(stats_a, stats_b).head(MAX_PAIRS_LISTED)
    tokens_a, tokens_b = cached_sae.top_tokens(a, 4), cached_sae.top_tokens(b, 4)
    table["top tokens A"] = [tokens_a[i] for i in table["feature_a"]]
    table["top tokens B"] = [tokens_b[i] for i in table["feature_b"]]
    st.markdown("##### Paired features")
    st.dataframe(table, hide_index=True, width="stretch", height=300,
                 column_config={"correlation": st.column_config.ProgressColumn(min_value=-1.0, max_value=1.0,
                                                                                format="%.3f"),
                                "density_a": st.column_config.NumberColumn(format="%.4f"),
                                "density_b": st.column_config.NumberColumn(format="%.4f")})
    if len(table):
        options = list(range(len(table)))
        row = st.selectbox(
            "Compare a pair", options,
            format_func=lambda i: f"B {table['feature_b'].iloc[i]} ↔ A {table['feature_a'].iloc[i]} "
            f"(r = {table['correlation'].iloc[i]:.3f})",
            key=state.Matching.PAIR,
        )
        left, right = st.columns(2, gap="medium")
        with left, st.container(border=True):
            st.caption(f"A · {cached_sae.describe(by_key[a])}")
            render_feature_card(a, int(table["feature_a"].iloc[row]), name="A · ")
        with right, st.container(border=True):
            st.caption(f"B · {cached_sae.describe(by_key[b])}")
            render_feature_card(b, int(table["feature_b"].iloc[row]), name="B · ")
