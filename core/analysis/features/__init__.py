"""What each SAE latent responds to, and which latents two SAEs share.

Modules: stats (`feature_stats`: one streaming pass over a tokens run keeping, per latent,
density, mean and max activation, top-k tokens, a uniform sample of firing tokens and an
activation histogram), labels (association with each label column: mutual information for
categorical columns, Pearson r for numeric ones), examples (`feature_examples`: context
windows with per-token activations), logit_effects (each decoder direction through a causal
LM's final-norm gain and unembedding), decoder_map (a 2-D map of the decoder directions),
matching (`match_features`, Lan et al. 2024), search (`search_features`), cached (the same
through the store) and legacy (readers of results stored before the codec).
"""

from core.analysis.features import legacy  # noqa: F401 - registers the readers of older stored results
from core.analysis.features.cached import (
    feature_stats_cached,
    feature_stats_params,
    logit_effects_cached,
    match_features_cached,
    matching_params,
    stored_feature_stats,
    stored_matching,
)
from core.analysis.features.decoder_map import DecoderMap, decoder_map
from core.analysis.features.examples import FeatureExample, feature_examples, readable_tokens
from core.analysis.features.labels import MAX_CATEGORIES, LabelAssociation
from core.analysis.features.logit_effects import LogitEffects, logit_effects
from core.analysis.features.matching import (
    DEFAULT_MATCHING_VARIANT,
    MATCHING_VARIANTS,
    FeatureMatching,
    match_features,
)
from core.analysis.features.search import search_features
from core.analysis.features.stats import FEATURES_VERSION, HIST_EDGES, SORT_KEYS, FeatureStats, feature_stats
from core.progress import Progress

__all__ = [
    "DEFAULT_MATCHING_VARIANT",
    "FEATURES_VERSION",
    "HIST_EDGES",
    "MATCHING_VARIANTS",
    "MAX_CATEGORIES",
    "SORT_KEYS",
    "DecoderMap",
    "FeatureExample",
    "FeatureMatching",
    "FeatureStats",
    "LabelAssociation",
    "LogitEffects",
    "Progress",
    "decoder_map",
    "feature_examples",
    "feature_stats",
    "feature_stats_cached",
    "feature_stats_params",
    "logit_effects",
    "logit_effects_cached",
    "match_features",
    "match_features_cached",
    "matching_params",
    "readable_tokens",
    "search_features",
    "stored_feature_stats",
    "stored_matching",
]
