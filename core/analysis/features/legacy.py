"""Readers for feature results stored before the codec: statistics, matchings, logit effects, maps.

Those entries hold the same arrays under field names (statistics: label arrays as
label<i>_tokens / label<i>_fires / label<i>_correlation) and their scalars in meta.json.
Importing this module registers the readers with `core.codec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core import codec
from core.analysis.features.decoder_map import DecoderMap
from core.analysis.features.labels import LabelAssociation
from core.analysis.features.logit_effects import LogitEffects
from core.analysis.features.matching import FeatureMatching
from core.analysis.features.stats import FeatureStats

_STATS_ARRAYS = ("density", "max_activation", "mean_activation", "top_rows", "top_values", "sample_rows",
                 "sample_values", "hist_edges", "hist_counts")
_MATCHING_ARRAYS = ("partner", "correlation", "random_correlation")


def read_feature_stats(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> FeatureStats:
    """FeatureStats from arrays named by field and meta {sae_key, run_key, layer, n_tokens, labels, stats_params}."""
    labels = {}
    for column, info in meta.get("labels", {}).items():
        i = info["index"]
        if info["kind"] == "categorical":
            labels[column] = LabelAssociation(column, "categorical", tuple(info["values"]),
                                              np.asarray(arrays[f"label{i}_tokens"]),
                                              np.asarray(arrays[f"label{i}_fires"]))
        else:
            correlation = np.asarray(arrays[f"label{i}_correlation"])
            labels[column] = LabelAssociation(column, "numeric", correlation=correlation)
    return FeatureStats(
        sae_key=meta["sae_key"], run_key=meta["run_key"], layer=meta["layer"], n_tokens=int(meta["n_tokens"]),
        **{name: np.asarray(arrays[name]) for name in _STATS_ARRAYS},
        labels=labels, params=dict(meta.get("stats_params", {})),
    )


def read_feature_matching(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> FeatureMatching:
    """FeatureMatching from its three arrays, meta["matching"] scalars and the SAE keys in meta["params"]."""
    scalars = {name: float("nan") if value is None else value for name, value in meta["matching"].items()}
    return FeatureMatching(sae_a=meta["params"]["a"], sae_b=meta["params"]["b"],
                           **{name: np.asarray(arrays[name]) for name in _MATCHING_ARRAYS}, **scalars)


def read_logit_effects(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> LogitEffects:
    """LogitEffects from arrays named by field."""
    return LogitEffects(**{name: np.asarray(value) for name, value in arrays.items()})


def read_decoder_map(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> DecoderMap:
    """DecoderMap from its one array, "coords"."""
    return DecoderMap(np.asarray(arrays["coords"]))


codec.register_legacy(FeatureStats, read_feature_stats)
codec.register_legacy(FeatureMatching, read_feature_matching)
codec.register_legacy(LogitEffects, read_logit_effects)
codec.register_legacy(DecoderMap, read_decoder_map)
