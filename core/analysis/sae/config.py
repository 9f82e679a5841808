"""SAEConfig: how to train one sparse autoencoder; every field goes into the store key."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.analysis.sae.architectures import architecture_class, trainable_architectures
from core.analysis.sae.scaler import NORMALIZATIONS
from core.errors import LayerscopeError
from core.validation import check_choice, check_int, check_number


@dataclass(frozen=True)
class SAEConfig:
    """How to train one sparse autoencoder. Every field goes into the store key."""

    architecture: str = "topk"  # "topk" (Gao et al. 2024) or "standard" (ReLU + L1, Bricken et al. 2023)
    expansion: float = 4.0  # width d_sae = round(expansion * d_in); at least 1 (a width below d is not overcomplete)
    k: int = 32  # latents kept per token (topk only)
    l1_coefficient: float = 5.0  # weight of the decoder-norm-weighted L1 penalty (standard only)
    lr: float = 4e-4  # Adam learning rate; decays linearly to 0 over the last 20% of steps
    batch_size: int = 1024  # tokens per optimiser step
    training_tokens: int = 1_000_000  # tokens seen in training; the training split is repeated as needed
    seed: int = 0  # initialisation, batch order and the held-out split
    normalize_activations: str = "expected_average_only_in"  # scale inputs to mean norm sqrt(d_in) (SAELens), or "none"
    held_out_fraction: float = 0.1  # share of the run's inputs (whole inputs, not tokens) kept for evaluation
    exclude_first_token: bool = True  # leave each input's first token out (attention sinks / [CLS] dwarf the rest)
    revive_dead: bool = True  # topk: AuxK loss; standard: resample dead latents at 1/4, 1/2, 3/4 of training
    dead_window: int = 20_000  # a latent that has not fired for this many training tokens counts as dead
    aux_k_coefficient: float = 1 / 32  # weight of the AuxK loss (Gao et al. use 1/32)

    def __post_init__(self) -> None:
        # each value in its canonical type (4 and 4.0, numpy and Python numbers), so equal configs share a store key
        canonical = functools.partial(object.__setattr__, self)  # the dataclass is frozen

        check_choice("architecture", self.architecture, trainable_architectures())
        canonical("expansion", _because(
            "a width smaller than d is not overcomplete; use expansion >= 1 (typical: 4 to 32)",
            check_number, "expansion", self.expansion, low=1.0))
        canonical("k", check_int("k", self.k, low=1))
        canonical("l1_coefficient", check_number("l1_coefficient", self.l1_coefficient, low=0.0))
        canonical("lr", check_number("lr", self.lr, low=0.0, low_open=True))
        canonical("batch_size", check_int("batch_size", self.batch_size, low=1))
        canonical("training_tokens", _because(
            f"train on at least one batch ({self.batch_size} tokens)",
            check_int, "training_tokens", self.training_tokens, low=self.batch_size))
        canonical("seed", check_int("seed", self.seed, low=0))
        check_choice("normalize_activations", self.normalize_activations, NORMALIZATIONS)
        canonical("held_out_fraction", check_number(
            "held_out_fraction", self.held_out_fraction, low=0.0, high=1.0, low_open=True, high_open=True))
        canonical("dead_window", check_int("dead_window", self.dead_window, low=1))
        canonical("aux_k_coefficient", check_number("aux_k_coefficient", self.aux_k_coefficient, low=0.0))

    def width(self, d_in: int) -> int:
        """d_sae for inputs of width d_in."""
        return round(self.expansion * d_in)

    def check_for(self, d_in: int) -> None:
        """Raise LayerscopeError if this config cannot build an SAE on d_in-wide inputs."""
        width = self.width(d_in)
        if width < d_in:
            raise LayerscopeError(f"width {width} is smaller than the layer's width d={d_in}; use expansion >= 1")
        architecture_class(self.architecture).check_config(self, d_in, width)

    def architecture_options(self) -> dict[str, Any]:
        """Options of the architecture's constructor taken from this config (e.g. k for topk)."""
        return architecture_class(self.architecture).options(self)

    @property
    def total_steps(self) -> int:
        """Optimiser steps: training_tokens // batch_size, at least 1."""
        return max(1, self.training_tokens // self.batch_size)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SAEConfig:
        """The config of `values`; keys that are not fields are ignored."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def _because(reason: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a core.validation check, adding to its message why the bound holds."""
    try:
        return check(*args, **kwargs)
    except LayerscopeError as err:
        raise LayerscopeError(f"{err}: {reason}") from None
