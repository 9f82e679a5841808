"""TopK (Gao et al. 2024): exactly the k largest pre-activations survive the ReLU.

f = ReLU(TopK(W_enc^T (x - b_dec) + b_enc)). Decoder rows are kept at unit norm (gradients
projected onto the sphere, rows renormalised after each step), and dead latents are revived
by the AuxK loss: the top ``d_in // 2`` dead latents reconstruct what the live ones missed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from core.analysis.sae.architectures.base import Architecture, TrainingForward
from core.analysis.sae.architectures.registry import register_architecture
from core.errors import LayerscopeError

if TYPE_CHECKING:
    from core.analysis.sae.config import SAEConfig
    from core.analysis.sae.model import SparseAutoencoder
    from core.analysis.sae.trainer import SAETrainer


class TopK(Architecture):
    """Exactly k latents active per token."""

    description = "TopK (Gao et al. 2024): exactly k latents active per token"
    trainable = True
    initial_decoder_norm = 1.0  # unit-norm decoder rows (Gao et al.)
    saelens_activation = "topk"

    def __init__(self, d_sae: int, *, k: int | None = None) -> None:
        super().__init__(d_sae)
        if isinstance(k, bool) or k is None or not 1 <= int(k) <= self.d_sae:
            raise LayerscopeError(f"a topk SAE needs 1 <= k <= d_sae={self.d_sae}; got k={k!r}")
        self._k = int(k)

    @property
    def k(self) -> int:
        return self._k

    def activate(self, sae: SparseAutoencoder, pre: torch.Tensor) -> torch.Tensor:
        top = pre.topk(self._k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))

    # ----- configuration ------------------------------------------------------------------
    @classmethod
    def options(cls, config: SAEConfig) -> dict[str, Any]:
        return {"k": config.k}

    @classmethod
    def check_config(cls, config: SAEConfig, d_in: int, width: int) -> None:
        if config.k > width:
            raise LayerscopeError(
                f"k={config.k} is larger than the width {width} ({config.expansion:g} x d={d_in}); "
                f"k must be at most the number of latents (typical: 16 to 128)"
            )

    # ----- training -----------------------------------------------------------------------
    def training_forward(self, sae: SparseAutoencoder, pre: torch.Tensor) -> TrainingForward:
        top = pre.topk(self._k, dim=-1)
        values = torch.relu(top.values)  # (batch, k)
        # decode from the k survivors only: a weighted bag of k decoder rows per token, whose
        # backward is a sparse accumulation instead of a (batch, k, d_in) gather
        recon = F.embedding_bag(top.indices, sae.W_dec, per_sample_weights=values, mode="sum") + sae.b_dec
        fired = values > 0
        return TrainingForward(recon=recon, fired=top.indices[fired], n_active=fired.sum())

    def penalty(
        self, trainer: SAETrainer, pre: torch.Tensor, residual: torch.Tensor, forward: TrainingForward,
        dead: torch.Tensor,
    ) -> tuple[torch.Tensor, float]:
        config = trainer.config
        if not config.revive_dead:
            return residual.new_zeros(()), config.aux_k_coefficient
        return aux_k_loss(trainer.sae, pre, residual.detach(), dead), config.aux_k_coefficient

    def after_backward(self, sae: SparseAutoencoder) -> None:
        # remove the gradient component along each (unit) decoder row, so the step keeps rows on the sphere
        W, grad = sae.W_dec, sae.W_dec.grad
        if grad is not None:
            grad -= (grad * W).sum(dim=1, keepdim=True) * W

    def after_step(self, sae: SparseAutoencoder) -> None:
        sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    # ----- SAELens cfg.json ----------------------------------------------------------------
    def saelens_fields(self) -> dict[str, Any]:
        return {**super().saelens_fields(), "activation_fn_kwargs": {"k": self._k}, "k": self._k}

    @classmethod
    def read_saelens(cls, cfg: Mapping[str, Any], d_sae: int, cfg_path: Path) -> dict[str, Any]:
        kwargs = cfg.get("activation_fn_kwargs") or {}
        k = cfg.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_sae:
            raise LayerscopeError(f"{cfg_path}: a topk SAE needs an integer k between 1 and d_sae={d_sae}; got k={k!r}")
        return {"k": k}


def aux_k_loss(sae: SparseAutoencoder, pre: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """AuxK (Gao et al. 2024, App. B.1): the top dead latents reconstruct what the live ones missed.

    pre: (batch, d_sae) pre-activations; residual: (batch, d_in) x - x_hat; dead: (d_sae,) bool.
    """
    n_dead = int(dead.sum())
    if n_dead == 0:
        return pre.new_zeros(())
    k_aux = min(sae.d_in // 2, n_dead)
    masked = torch.where(dead[None], pre, torch.full_like(pre, -torch.inf))
    top = masked.topk(k_aux, dim=-1)
    aux_acts = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
    aux_recon = aux_acts @ sae.W_dec  # (batch, d_in), no bias: it reconstructs a residual
    return (aux_recon - residual).pow(2).sum(-1).mean() * min(1.0, n_dead / k_aux)


register_architecture("topk", TopK)
