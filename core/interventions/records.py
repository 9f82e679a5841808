"""What interventions produce: a direction at a layer, a steering result, an erasure result.

These are plain dataclasses stored with the one codec (core/codec.py): arrays as `.npy`,
the rest as JSON, nothing pickled. Shapes use A = number of alphas, P = number of prompts,
R = number of readout layers, k = tokens listed, L = layers probed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DIRECTION_VERSION = 1
STEERING_VERSION = 1
ERASURE_VERSION = 1

# how a direction was made
SOURCES = ("probe", "mean_difference", "contrast_pca", "sae_feature")
# where steering adds the direction
POSITIONS = ("all", "last")
# how a concept is erased
ERASERS = ("leace", "mean_difference")


@dataclass(frozen=True, eq=False)
class Direction:
    """A unit vector in one layer's activation space, with how it was made.

    `scale` is the mean norm of the source run's rows at the layer; steering measures alpha in
    the prompts' median token norm at the layer by default (core/interventions/steer.py).
    """

    vector: np.ndarray  # (d,) float32, unit L2 norm
    layer: str  # module path of the layer it lives at (as in runs, e.g. "model.layers.15")
    model: dict[str, Any]  # identity of the model (LoadedModel.identity: name, weights, modality)
    source: str  # one of SOURCES
    scale: float  # mean L2 norm of the layer's activations over the source run
    provenance: dict[str, Any] = field(default_factory=dict)  # run key, dataset, pooling, label, classes, C, SAE key, feature, seed
    name: str = ""  # what people see, e.g. "sentiment: positive - negative @ model.layers.15"

    @property
    def width(self) -> int:
        return int(self.vector.shape[0])


@dataclass(frozen=True, eq=False)
class SteeringResult:
    """Greedy generations of a causal LM with alpha * scale * direction added at one layer, per alpha and prompt."""

    model_name: str
    layer: str
    direction_name: str
    direction_key: str  # store key of the direction ("" when it was not stored)
    position: str  # one of POSITIONS
    scale: float  # alpha = 1 adds this much (params["scale"]: the prompts' median token norm, or the direction's scale)
    alphas: np.ndarray  # (A,) float64, in the order given (0 included when asked)
    prompts: tuple[str, ...]  # (P,)
    continuations: np.ndarray  # (A, P) str, the generated text after each prompt
    kl: np.ndarray  # (A, P) float64, KL(p_steered || p_unsteered) of the first generated token (nats)
    gained_tokens: np.ndarray  # (A, k) str, tokens whose mean next-token log-probability rose most
    gained_shift: np.ndarray  # (A, k) float64, their mean log-probability change (nats)
    lost_tokens: np.ndarray  # (A, k) str, tokens whose mean log-probability fell most
    lost_shift: np.ndarray  # (A, k) float64
    readout_label: str  # the label the probe reads ("" when no probe was asked for)
    readout_class: str  # the class whose probability is read
    readout_layers: tuple[str, ...]  # (R,) the steered layer and later ones
    readout: np.ndarray  # (A, R) mean probe P(readout_class) on the steered residual stream of the generated tokens
    continuation_readout: np.ndarray  # (A,) mean probe P(readout_class) on the continuations re-read unsteered
    params: dict[str, Any] = field(default_factory=dict)  # max_new_tokens, seed, top_k, probe C, run key, ...


@dataclass(frozen=True, eq=False)
class ErasureResult:
    """Probe accuracy before and after erasing a concept at one layer, and what the erasure cost."""

    model_name: str
    run_key: str  # the run the eraser was fitted on
    layer: str  # the erased layer
    method: str  # one of ERASERS
    label: str  # the concept erased (a label column of the run's dataset)
    layer_names: tuple[str, ...]  # (L,) the erased layer, then the later layers probed
    accuracy_before: np.ndarray  # (L,) float64 cross-validated probe accuracy without the eraser
    accuracy_after: np.ndarray  # (L,) float64 the same with the eraser applied at `layer`
    chance: float  # majority-class share
    mean_squared_change: float  # mean over inputs of ||x - x'||^2 at the erased layer, this method
    mean_difference_change: float  # the same for the mean-difference projection, for comparison
    relative_change: float  # mean_squared_change / mean ||x - mean||^2 (share of the layer's variance moved)
    loss_before: float  # causal LMs: mean next-token cross-entropy on the dataset (nats); NaN for encoders
    loss_after: float  # the same with the eraser applied
    params: dict[str, Any] = field(default_factory=dict)  # n_folds, C, seed, n, positions erased, ...
