"""What an SAE architecture decides: the activation rule, its training loss terms and its SAELens fields.

An `Architecture` is held by a `SparseAutoencoder` (``sae.arch``); everything that differs
between architectures is a method here, so the model, the trainer and the SAELens reader
never ask which architecture they hold. Adding one = one file with a subclass and a
`register_architecture(name, cls)` call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from core.errors import LayerscopeError

if TYPE_CHECKING:
    from core.analysis.sae.config import SAEConfig
    from core.analysis.sae.model import SparseAutoencoder
    from core.analysis.sae.trainer import SAETrainer


@dataclass
class TrainingForward:
    """One training batch through the SAE: the reconstruction and which latents fired."""

    recon: torch.Tensor  # (batch, d_in)
    fired: torch.Tensor  # ids of the latents that fired, with repeats
    n_active: torch.Tensor  # () number of (token, latent) activations
    latents: torch.Tensor | None = None  # (batch, d_sae) when the loss needs them all


class Architecture:
    """The parts of a sparse autoencoder that depend on its architecture."""

    name: ClassVar[str] = ""  # set by register_architecture
    description: ClassVar[str] = ""  # one line for menus
    trainable: ClassVar[bool] = False  # Layerscope can train it (else it only loads from SAELens)
    initial_decoder_norm: ClassVar[float] = 0.1  # norm of the decoder rows at initialisation
    saelens_activation: ClassVar[str] = "relu"  # pre-6 cfg.json's activation_fn

    def __init__(self, d_sae: int, *, k: int | None = None) -> None:
        self.d_sae = int(d_sae)

    @property
    def k(self) -> int | None:
        """Latents kept per token, for architectures that fix it."""
        return None

    # ----- the module ---------------------------------------------------------------------
    def extra_parameters(self) -> dict[str, torch.Tensor]:
        """Parameters beyond W_enc, b_enc, W_dec, b_dec, by SAELens name (initial values)."""
        return {}

    def activate(self, sae: SparseAutoencoder, pre: torch.Tensor) -> torch.Tensor:
        """(n, d_sae) pre-activations -> sparse latent activations (>= 0)."""
        raise NotImplementedError

    # ----- configuration ------------------------------------------------------------------
    @classmethod
    def options(cls, config: SAEConfig) -> dict[str, Any]:
        """Constructor options taken from a training config (e.g. k)."""
        return {}

    @classmethod
    def check_config(cls, config: SAEConfig, d_in: int, width: int) -> None:
        """Raise LayerscopeError if `config` cannot build this architecture on d_in-wide inputs."""

    # ----- training -----------------------------------------------------------------------
    def training_forward(self, sae: SparseAutoencoder, pre: torch.Tensor) -> TrainingForward:
        """Reconstruct a batch from its pre-activations, keeping what the loss needs."""
        raise LayerscopeError(f"a {self.name} SAE cannot be trained here; it can only be loaded")

    def penalty(
        self, trainer: SAETrainer, pre: torch.Tensor, residual: torch.Tensor, forward: TrainingForward,
        dead: torch.Tensor,
    ) -> tuple[torch.Tensor, float]:
        """(aux, weight): the loss is mse + weight * aux."""
        return residual.new_zeros(()), 0.0

    def after_backward(self, sae: SparseAutoencoder) -> None:
        """Adjust gradients before the optimiser step."""

    def after_step(self, sae: SparseAutoencoder) -> None:
        """Adjust weights after the optimiser step (under no_grad)."""

    def revival_steps(self, total_steps: int) -> set[int]:
        """Steps after which dead latents are resampled."""
        return set()

    def revive(self, trainer: SAETrainer, x: torch.Tensor) -> int:
        """Resample dead latents on the (scaled) batch x; returns how many."""
        return 0

    # ----- SAELens cfg.json ----------------------------------------------------------------
    def saelens_fields(self) -> dict[str, Any]:
        """Architecture-specific top-level cfg.json fields (SAELens 6 and pre-6 names)."""
        return {"activation_fn_str": self.saelens_activation, "activation_fn": self.saelens_activation,
                "activation_fn_kwargs": {}}

    @classmethod
    def read_saelens(cls, cfg: Mapping[str, Any], d_sae: int, cfg_path: Path) -> dict[str, Any]:
        """Constructor options read from a cfg.json (LayerscopeError when they are not supported)."""
        return {}
