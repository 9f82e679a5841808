"""JumpReLU (Rajamanoharan et al. 2024), loaded from SAELens: f = ReLU(pre) where pre > threshold.

Layerscope reads and evaluates these SAEs but does not train them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from core.analysis.sae.architectures.base import Architecture
from core.analysis.sae.architectures.registry import register_architecture

if TYPE_CHECKING:
    from core.analysis.sae.model import SparseAutoencoder


class JumpReLU(Architecture):
    """ReLU latents that fire only above a learned per-latent threshold."""

    description = "JumpReLU (Rajamanoharan et al. 2024): a learned threshold per latent"

    def extra_parameters(self) -> dict[str, torch.Tensor]:
        return {"threshold": torch.zeros(self.d_sae)}  # (d_sae,)

    def activate(self, sae: SparseAutoencoder, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre) * (pre > sae.threshold)


register_architecture("jumprelu", JumpReLU)
