"""SAE figures: an SAE's training curves, one latent's activation histogram, label association and logit
effects, the map of decoder directions, the density of all latents, and the matching of two SAEs.

Their specs name stored SAEs by key (`sae=`, `saes=`) and a latent by id (`feature=`); the
spec's runs are the runs the SAEs were trained on, so a sidecar records where the figure
came from. Results are read through the store (feature statistics, logit effects, decoder
maps and matchings are computed there when missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.errors import LayerscopeError
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register
from core.runs import is_untrained
from core.validation import check_choice, check_int

if TYPE_CHECKING:
    from core.analysis.features import FeatureMatching, FeatureStats, LogitEffects
    from core.analysis.sae import StoredSAE

GALLERY = "views/sae_gallery.py"
MAP_METHODS = ("pca", "umap")
LOGIT_TOP_K = 10  # tokens kept per latent and direction in the stored logit effects
HOVER_TOKENS = 4  # strongest tokens named in a feature map's hover text


# ----- stored SAEs and their results ------------------------------------------------------------
def _version(context: Context, key: str) -> int | None:
    """When SAE `key`'s entry was written (an SAE trained again under its key is read afresh)."""
    from core.analysis.sae import SAE_KIND

    meta = context.store.entry_dir(SAE_KIND, key) / "meta.json"
    return meta.stat().st_mtime_ns if meta.is_file() else None


def stored_sae(context: Context, key: str) -> StoredSAE:
    """The stored SAE `key`, opened once per version of its entry (checksums verified)."""
    from core.analysis.sae import open_sae

    return context.cached(("sae", key, _version(context, key)), lambda: open_sae(context.store, key))


def sae_runs(*entries: StoredSAE) -> list[str]:
    """Keys of the runs `entries` were trained on, each once: the runs of their figures' specs."""
    return list(dict.fromkeys(entry.run_key for entry in entries))


def _entries(context: Context, kind: str, runs: Sequence[str], keys: Sequence[str]) -> list[StoredSAE]:
    """The stored SAEs `keys`; LayerscopeError unless `runs` are the runs they were trained on."""
    entries = [stored_sae(context, str(key)) for key in keys]
    expected = sae_runs(*entries)
    if list(runs) != expected:
        raise LayerscopeError(f"figure {kind!r} of SAE(s) {', '.join(map(str, keys))} needs runs={expected!r} "
                              f"(the runs they were trained on); got {list(runs)!r}")
    return entries


def sae_stats(context: Context, entry: StoredSAE) -> FeatureStats:
    """Per-latent statistics of `entry` on its own run, through the store."""
    from core.analysis.features import feature_stats_cached

    def compute() -> FeatureStats:
        return feature_stats_cached(entry, context.run(entry.run_key), context.store)

    return context.cached(("sae_stats", entry.key, _version(context, entry.key)), compute)


def sae_logit_effects(context: Context, entry: StoredSAE) -> LogitEffects:
    """Tokens each latent promotes and suppresses through its run's causal LM, through the store."""
    from core.analysis.features import logit_effects_cached

    acts = context.run(entry.run_key)
    model = acts.meta["model"]
    if not model.get("is_causal_lm") or is_untrained(acts):
        raise LayerscopeError(f"SAE {entry.key} is on a run of {model.get('name')!r}, which is not a trained causal "
                              "LM: logit effects need the model's unembedding")

    def compute() -> LogitEffects:
        return logit_effects_cached(entry, context.model(model["name"]), context.store, top_k=LOGIT_TOP_K)

    return context.cached(("sae_logits", entry.key, _version(context, entry.key)), compute)


def strongest_tokens(stats: FeatureStats, acts, n: int = 5) -> list[str]:
    """Each latent's `n` strongest distinct tokens (readable) as one comma-separated string."""
    from core.analysis.features import readable_tokens

    readable = readable_tokens(acts.tokens)
    return [", ".join(list(dict.fromkeys(readable[r].strip() for r in rows if r >= 0))[:n])
            for rows in stats.top_rows]


def _feature(stats: FeatureStats, feature: int) -> int:
    return check_int("feature", feature, low=0, high=stats.n_features - 1)


def _sae_info(entry: StoredSAE) -> dict[str, Any]:
    """Which SAE a figure comes from: key, run, layer, architecture, width and training config."""
    meta = entry.meta
    return {"key": entry.key, "run": entry.run_key, "layer": entry.layer, "architecture": meta.get("architecture"),
            "d_sae": meta.get("d_sae"), "source": meta.get("source"), "config": meta.get("config") or {}}


def _analysis(entry: StoredSAE, metric: str, **parameters: Any) -> dict[str, Any]:
    """What a figure of one SAE shows, with that SAE and its training seed."""
    info = _sae_info(entry)
    seeds = {"training": info["config"]["seed"]} if "seed" in info["config"] else {}
    return {"metric": metric, "variant": f"{info['architecture']} SAE, {info['d_sae']} latents",
            "parameters": parameters, "seeds": seeds, "sae": info}


# ----- one SAE ----------------------------------------------------------------------------------
@register("sae_training_curves", page="views/sae_train.py")
def training_curves_recipe(context: Context, runs, *, sae: str, title: str | None = None) -> BuiltFigure:
    """The Train SAE page's curves: loss, L0 and variance explained against training tokens."""
    from core.figures.sae import training_curves

    (entry,) = _entries(context, "sae_training_curves", runs, [sae])
    history = entry.history
    fig = training_curves(history, title=title or f"Training · {entry.label}")
    table = pd.DataFrame({"tokens": history.tokens, "loss": history.loss, "l0": history.l0, "fve": history.fve})
    caption = (f"Training of {entry.label}: loss, active latents per token (L0) and variance explained on the "
               "training batches." + (f" Stopped early: {history.stopped}" if history.stopped else ""))
    return BuiltFigure(fig, table, _analysis(entry, "training loss, L0, FVE (training batches)"), caption,
                       f"sae-training-{entry.key}", result=history)


@register("sae_density_histogram", page=GALLERY)
def density_histogram_recipe(context: Context, runs, *, sae: str, title: str = "Feature density") -> BuiltFigure:
    """The gallery's histogram of the latents' firing densities (dead latents counted in the title)."""
    from core.figures.sae import density_histogram

    (entry,) = _entries(context, "sae_density_histogram", runs, [sae])
    stats = sae_stats(context, entry)
    fig = density_histogram(stats, title=title)
    table = pd.DataFrame({"feature": np.arange(stats.n_features), "density": stats.density, "dead": stats.dead})
    caption = (f"Firing density of the {stats.n_features:,} latents of {entry.label} over {stats.n_tokens:,} tokens; "
               f"{int(stats.dead.sum())} never fire.")
    return BuiltFigure(fig, table, _analysis(entry, "log10 firing density", **stats.params), caption,
                       f"sae-density-{entry.key}", result=stats)


@register("sae_feature_map", page=GALLERY)
def feature_map_recipe(context: Context, runs, *, sae: str, method: str = "pca", selected: int | None = None,
                       title: str | None = None) -> BuiltFigure:
    """The gallery's map of the latents' decoder directions (PCA or UMAP, cosine), coloured by firing density."""
    from core.analysis.features import decoder_map
    from core.figures.sae import feature_map

    check_choice("method", method, MAP_METHODS)
    (entry,) = _entries(context, "sae_feature_map", runs, [sae])
    stats = sae_stats(context, entry)
    coords = context.cached(("sae_map", entry.key, _version(context, entry.key), method),
                            lambda: decoder_map(entry, context.store, method=method))
    tokens = strongest_tokens(stats, context.run(entry.run_key), HOVER_TOKENS)
    hover = [f"feature {i} · {t}" for i, t in enumerate(tokens)]
    selected = None if selected is None else _feature(stats, selected)
    fig = feature_map(coords, stats, method=method.upper(), selected=selected, hover=hover, title=title)
    table = pd.DataFrame({"feature": np.arange(stats.n_features), "x": coords[:, 0], "y": coords[:, 1],
                          "density": stats.density, "top_tokens": tokens})
    caption = (f"{method.upper()} map of the decoder directions of {entry.label} (cosine), coloured by log10 firing "
               "density.")
    return BuiltFigure(fig, table, _analysis(entry, "decoder directions (cosine)", method=method, seed=0), caption,
                       f"sae-feature-map-{entry.key}", result=coords)


# ----- one latent -------------------------------------------------------------------------------
@register("sae_activation_histogram", page=GALLERY)
def activation_histogram_recipe(context: Context, runs, *, sae: str, feature: int, height: int = 240,
                                title: str | None = None) -> BuiltFigure:
    """A feature card's histogram of one latent's non-zero activations (log-spaced bins)."""
    from core.figures.sae import activation_histogram

    (entry,) = _entries(context, "sae_activation_histogram", runs, [sae])
    stats = sae_stats(context, entry)
    f = _feature(stats, feature)
    fig = activation_histogram(stats, f, title=title, height=check_int("height", height, low=100))
    edges = stats.hist_edges
    table = pd.DataFrame({"low": edges[:-1], "high": edges[1:], "tokens": stats.hist_counts[f]})
    caption = (f"Activations of latent {f} of {entry.label} where it fires ({stats.density[f]:.2%} of "
               f"{stats.n_tokens:,} tokens), on log-spaced bins.")
    return BuiltFigure(fig, table, _analysis(entry, "activation when active", feature=f), caption,
                       f"sae-{entry.key}-feature-{f}-histogram", result=stats)


@register("sae_label_association", page=GALLERY)
def label_association_recipe(context: Context, runs, *, sae: str, feature: int, column: str, height: int = 240,
                             title: str | None = None) -> BuiltFigure:
    """A feature card's firing rate of one latent on each value of a label (Pearson r for a numeric label)."""
    from core.figures.sae import label_association_figure

    (entry,) = _entries(context, "sae_label_association", runs, [sae])
    stats = sae_stats(context, entry)
    f = _feature(stats, feature)
    association = stats.labels[check_choice("column", column, list(stats.labels))]
    fig = label_association_figure(association, f, title=title, height=check_int("height", height, low=100))
    if association.kind == "categorical":
        table = pd.DataFrame({column: list(association.values), "tokens": association.tokens_per_value,
                              "fires": association.fires_per_value[f]})
        metric = "firing rate per label value"
    else:
        table = pd.DataFrame({"column": [column], "pearson_r": [association.correlation[f]]})
        metric = "Pearson r of the activation with the label"
    caption = f"How often latent {f} of {entry.label} fires on each {column} ({association.kind} label)."
    return BuiltFigure(fig, table, _analysis(entry, metric, feature=f, column=column), caption,
                       f"sae-{entry.key}-feature-{f}-{column}", result=association)


@register("sae_logit_effects", page=GALLERY)
def logit_effects_recipe(context: Context, runs, *, sae: str, feature: int, n: int = 10,
                         title: str | None = None) -> BuiltFigure:
    """A feature card's tokens that one latent's decoder direction promotes and suppresses (causal LMs)."""
    from core.figures.sae import logit_effects_figure

    (entry,) = _entries(context, "sae_logit_effects", runs, [sae])
    f = _feature(sae_stats(context, entry), feature)
    n = check_int("n", n, low=1, high=LOGIT_TOP_K)
    effects = sae_logit_effects(context, entry).for_feature(f)
    promoted, suppressed = effects["promoted"][:n], effects["suppressed"][:n]
    fig = logit_effects_figure(promoted, suppressed, feature=f, title=title)
    table = pd.DataFrame([{"token": t, "logit_effect": v, "direction": direction}
                          for direction, items in (("promoted", promoted), ("suppressed", suppressed))
                          for t, v in items])
    caption = (f"Tokens whose logits latent {f} of {entry.label} raises and lowers most, per unit activation "
               "(decoder direction through the final norm's gain and the unembedding).")
    return BuiltFigure(fig, table, _analysis(entry, "logit change per unit activation", feature=f, top_k=n),
                       caption, f"sae-{entry.key}-feature-{f}-logits", result=effects)


# ----- two SAEs ---------------------------------------------------------------------------------
@register("sae_feature_matching", page="views/sae_match.py")
def matching_recipe(context: Context, runs, *, saes: Sequence[str], variant: str = "layerscope",
                    title: str | None = None) -> BuiltFigure:
    """The Feature matching page's paired correlations of SAE B's latents with SAE A's, against random pairs.

    variant: the matching conventions, "layerscope" or "lan2024" (Lan et al. 2024's code).
    """
    from core.analysis.features import MATCHING_VARIANTS, match_features_cached
    from core.figures.sae import matching_figure

    if len(saes) != 2:
        raise LayerscopeError(f"saes={list(saes)!r} must name two SAEs (A and B)")
    variant = check_choice("variant", variant, tuple(MATCHING_VARIANTS))
    a, b = _entries(context, "sae_feature_matching", runs, saes)

    def compute() -> FeatureMatching:
        return match_features_cached(a, b, context.run(a.run_key), context.run(b.run_key), context.store,
                                     variant=variant)

    result = context.cached(("sae_matching", a.key, b.key, _version(context, a.key), _version(context, b.key),
                             variant), compute)
    if title is None and variant != "layerscope":
        title = f"Paired feature correlations ({result.level}, n={result.n_rows:,}) · {variant}"
    fig = matching_figure(result, title=title)
    table = pd.DataFrame({"feature_b": np.arange(len(result.partner)), "feature_a": result.partner,
                          "correlation": result.correlation, "random_correlation": result.random_correlation})
    caption = (f"Each latent of {b.label} paired with its most correlated latent of {a.label} over "
               f"{result.n_rows:,} {result.level}: mean r {result.mean_paired:.3f}, random pairs "
               f"{result.mean_random:.3f}. Conventions: {variant} ({MATCHING_VARIANTS[variant]}).")
    metric = ("Pearson r of paired activations" if variant == "layerscope"
              else "r of paired activations (z-scores with ddof=1, product over n)")
    analysis = {"metric": metric,
                "variant": f"{variant}: best partner in A per latent of B (Lan et al. 2024), "
                           f"{MATCHING_VARIANTS[variant]}",
                "parameters": result.params, "seeds": {"random_pairings": result.params.get("seed", 0)},
                "sae": {"a": _sae_info(a), "b": _sae_info(b)}}
    stem = "sae-feature-matching" if variant == "layerscope" else f"sae-feature-matching-{variant}"
    return BuiltFigure(fig, table, analysis, caption, stem, result=result)
