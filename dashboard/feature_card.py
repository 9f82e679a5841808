"""The card of one SAE latent, drawn by the feature gallery and the feature matching page.

Its numbers, highlighted top examples, activation histogram, label association and, for a
causal LM's run, the tokens it promotes and suppresses. The full card (the one opened
beside the gallery's map) adds examples across the activation range and exportable figures.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.figures import sae as figs
from dashboard import cached_sae, state
from dashboard.figure_export import build, show_built

EXAMPLES_PER_CARD = 4


def render_feature_card(key: str, feature: int, *, full: bool = False, name: str = "") -> None:
    """Draw latent `feature` of SAE `key`; `name` prefixes its title ("A · ")."""
    stats = cached_sae.stats(key)
    f = int(feature)
    density = stats.density[f]
    st.markdown(
        f"**{name}Feature {f}** · fires on {density:.2%} of tokens · max {stats.max_activation[f]:.2f} · "
        f"mean when active {stats.mean_activation[f]:.2f}"
    )
    if density == 0:
        st.caption("This latent never fires on the run's tokens (dead).")
        return
    rows = tuple(int(r) for r in stats.top_rows[f][: (8 if full else EXAMPLES_PER_CARD)] if r >= 0)
    scale = float(stats.max_activation[f])
    st.markdown(figs.examples_html(cached_sae.examples(key, f, rows), scale), unsafe_allow_html=True)
    if full:
        quantiles = stats.quantile_examples(f, n_intervals=4, per_interval=2)
        if quantiles:
            with st.expander("Examples across the activation range (random firing tokens by quantile)"):
                for interval in dict.fromkeys(q[2] for q in quantiles):
                    picks = tuple(r for r, _, name_ in quantiles if name_ == interval)
                    st.caption(interval)
                    st.markdown(figs.examples_html(cached_sae.examples(key, f, picks), scale), unsafe_allow_html=True)
    height = 240 if full else 180
    card = f"{'full' if full else 'card'}_{name}_{key}_{f}"
    runs = [stats.run_key]  # the run the SAE was trained on
    histogram = build("sae_activation_histogram", runs, sae=key, feature=f, height=height)
    if full:
        show_built(histogram, key=state.feature_card_chart("hist", card), width="stretch")
    else:
        st.plotly_chart(histogram.figure, width="stretch", key=state.feature_card_chart("hist", card))
    for column, association in stats.labels.items():
        if association.kind == "categorical":
            tops = association.top_values(f, n=2)
            if tops:
                st.caption(f"{column}: " + "; ".join(
                    f"**{t['value']}** {t['rate']:.0%} of its tokens (×{t['lift']:.1f} the base rate)" for t in tops))
            if full:
                show_built(build("sae_label_association", runs, sae=key, feature=f, column=column, height=height),
                           key=state.feature_card_chart(f"assoc_{column}", card), width="stretch")
        else:
            r = association.correlation[f]
            st.caption(f"{column}: Pearson r = {'undefined' if np.isnan(r) else f'{r:+.2f}'}")
    effects = cached_sae.logit_effects(key)
    if effects is not None:
        entry = effects.for_feature(f)
        n = 10 if full else 5
        st.markdown("Promotes " + figs.token_chips_html(entry["promoted"][:n]), unsafe_allow_html=True)
        st.markdown("Suppresses " + figs.token_chips_html(entry["suppressed"][:n], positive=False),
                    unsafe_allow_html=True)
        if full:
            show_built(build("sae_logit_effects", runs, sae=key, feature=f, n=n),
                       key=state.feature_card_chart("logits", card), width="stretch")
