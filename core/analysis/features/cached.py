"""Feature statistics, logit effects and matchings of stored SAEs, through the store.

Each result is keyed by the SAE entries it comes from and every parameter; the second call
with the same parameters reads the store. `stored_*` look a result up without computing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from core.analysis.features.logit_effects import LogitEffects, logit_effects
from core.analysis.features.matching import DEFAULT_MATCHING_VARIANT, FeatureMatching, match_features
from core.analysis.features.stats import FEATURES_VERSION, FeatureStats, feature_stats
from core.errors import LayerscopeError
from core.progress import Progress

if TYPE_CHECKING:
    from core.activations import Activations
    from core.analysis.sae import StoredSAE
    from core.models import LoadedModel
    from core.store import Store

STATS_KIND = "sae_features"
LOGIT_EFFECTS_KIND = "sae_logit_effects"
MATCHING_KIND = "sae_matching"


# ----- per-latent statistics -------------------------------------------------------------------
def feature_stats_params(stored: StoredSAE, *, top_k: int = 20, n_samples: int = 64, seed: int = 0) -> dict[str, Any]:
    """The store parameters of the statistics of a stored SAE on its own run."""
    return {"sae": stored.key, "run": stored.run_key, "layer": stored.layer, "top_k": top_k, "n_samples": n_samples,
            "seed": seed, "exclude_first_token": stored.exclude_first_token, "version": FEATURES_VERSION}


def stored_feature_stats(stored: StoredSAE, store: Store, **options: Any) -> FeatureStats | None:
    """The stored statistics of `stored`, or None when they have not been computed yet."""
    return store.lookup(STATS_KIND, feature_stats_params(stored, **options), FeatureStats)


def feature_stats_cached(
    stored: StoredSAE,
    acts: Activations,
    store: Store,
    *,
    top_k: int = 20,
    n_samples: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> FeatureStats:
    """feature_stats of a stored SAE on its own run, through the store (instant the second time)."""
    if acts.key != stored.run_key:
        raise LayerscopeError(f"SAE {stored.key} belongs to run {stored.run_key}, not {acts.key}")

    def compute() -> FeatureStats:
        return feature_stats(stored.sae, acts, stored.layer, sae_key=stored.key,
                             exclude_first_token=stored.exclude_first_token, top_k=top_k, n_samples=n_samples,
                             seed=seed, device=device, progress=progress)

    params = feature_stats_params(stored, top_k=top_k, n_samples=n_samples, seed=seed)
    return store.cached(STATS_KIND, params, compute, FeatureStats)


# ----- logit effects ---------------------------------------------------------------------------
def logit_effects_cached(stored: StoredSAE, model: LoadedModel, store: Store, *, top_k: int = 10) -> LogitEffects:
    """logit_effects through the store, keyed by the SAE and the model's weights."""
    if model.weights_hash != stored.meta.get("model_weights"):
        raise LayerscopeError(
            f"model {model.name!r} is not the model SAE {stored.key} was trained on ({stored.meta.get('model')})"
        )
    params = {"sae": stored.key, "model": model.identity, "top_k": top_k, "version": FEATURES_VERSION}
    return store.cached(LOGIT_EFFECTS_KIND, params, lambda: logit_effects(stored.sae, model, top_k=top_k),
                        LogitEffects)


# ----- matching --------------------------------------------------------------------------------
def matching_params(a: StoredSAE, b: StoredSAE, *, variant: str = DEFAULT_MATCHING_VARIANT, max_rows: int = 8192,
                    n_random: int = 10, min_correlation: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """The store parameters of a matching of two stored SAEs."""
    # the default conventions are those of matchings stored before there was a choice: their key stays
    chosen = {} if variant == DEFAULT_MATCHING_VARIANT else {"variant": variant}
    return {"a": a.key, "b": b.key, **chosen, "max_rows": max_rows, "n_random": n_random,
            "min_correlation": min_correlation, "seed": seed,
            "exclude_first_token": a.exclude_first_token or b.exclude_first_token, "version": FEATURES_VERSION}


def stored_matching(a: StoredSAE, b: StoredSAE, store: Store, **options: Any) -> FeatureMatching | None:
    """The stored matching of two SAEs, or None when it has not been computed yet."""
    return store.lookup(MATCHING_KIND, matching_params(a, b, **options), FeatureMatching)


def match_features_cached(
    a: StoredSAE,
    b: StoredSAE,
    acts_a: Activations,
    acts_b: Activations,
    store: Store,
    *,
    variant: str = DEFAULT_MATCHING_VARIANT,
    max_rows: int = 8192,
    n_random: int = 10,
    min_correlation: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> FeatureMatching:
    """match_features of two stored SAEs on their own runs, through the store."""
    params = matching_params(a, b, variant=variant, max_rows=max_rows, n_random=n_random,
                             min_correlation=min_correlation, seed=seed)

    def compute() -> FeatureMatching:
        return match_features(a.sae, acts_a, a.layer, b.sae, acts_b, b.layer, keys=(a.key, b.key), variant=variant,
                              exclude_first_token=params["exclude_first_token"], max_rows=max_rows,
                              n_random=n_random, min_correlation=min_correlation, seed=seed, device=device,
                              progress=progress)

    return store.cached(MATCHING_KIND, params, compute, FeatureMatching)
