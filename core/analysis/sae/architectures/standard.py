"""ReLU + L1 (Bricken et al. 2023, with the April 2024 update's L1 weighted by decoder norms).

f = ReLU(W_enc^T (x - b_dec) + b_enc), loss = |x - x_hat|^2 + l1 * sum_i f_i |W_dec,i| (the
penalty warms up over the first 5% of steps). Dead latents are resampled towards badly
reconstructed inputs at 1/4, 1/2 and 3/4 of training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.analysis.sae.architectures.base import Architecture, TrainingForward
from core.analysis.sae.architectures.registry import register_architecture
from core.errors import LayerscopeError

if TYPE_CHECKING:
    from core.analysis.sae.model import SparseAutoencoder
    from core.analysis.sae.trainer import SAETrainer


class Standard(Architecture):
    """ReLU latents with a decoder-norm-weighted L1 penalty."""

    description = "ReLU + L1 penalty (Bricken et al. 2023)"
    trainable = True
    initial_decoder_norm = 0.1  # rows of norm 0.1 (Conerly et al., SAELens)

    def activate(self, sae: SparseAutoencoder, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    # ----- training -----------------------------------------------------------------------
    def training_forward(self, sae: SparseAutoencoder, pre: torch.Tensor) -> TrainingForward:
        latents = torch.relu(pre)
        fired = latents > 0
        return TrainingForward(recon=sae.decode(latents), fired=torch.nonzero(fired)[:, 1], n_active=fired.sum(),
                               latents=latents)

    def penalty(
        self, trainer: SAETrainer, pre: torch.Tensor, residual: torch.Tensor, forward: TrainingForward,
        dead: torch.Tensor,
    ) -> tuple[torch.Tensor, float]:
        config = trainer.config
        warmup = min(1.0, (trainer.step_count + 1) / max(1, int(0.05 * config.total_steps)))
        l1 = (forward.latents * trainer.sae.W_dec.norm(dim=1)).sum(-1).mean()
        return l1, warmup * config.l1_coefficient

    def revival_steps(self, total_steps: int) -> set[int]:
        return {total_steps // 4, total_steps // 2, (3 * total_steps) // 4}

    @torch.no_grad()
    def revive(self, trainer: SAETrainer, x: torch.Tensor) -> int:
        """Bricken et al. 2023: point dead latents at inputs the SAE reconstructs worst; returns how many."""
        sae, window = trainer.sae, trainer.config.dead_window
        dead = torch.nonzero(trainer.tokens_since_fired >= window).flatten()
        if dead.numel() == 0:
            return 0
        losses = (sae.decode(sae.activate(sae.pre_activations(x))) - x).pow(2).sum(-1)  # (batch,)
        if not bool(torch.isfinite(losses).all()) or float(losses.sum()) <= 0:
            return 0
        generator = torch.Generator(device="cpu").manual_seed(trainer.config.seed + trainer.step_count)
        picks = torch.multinomial((losses**2).cpu(), dead.numel(), replacement=True, generator=generator)
        directions = x[picks.to(x.device)] - sae.b_dec
        directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        alive = trainer.tokens_since_fired < window
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
        sae.W_dec[dead] = directions * 0.1
        sae.W_enc[:, dead] = directions.T * enc_norm * 0.2
        sae.b_enc[dead] = 0.0
        # Adam's moments of the resampled latents start afresh, or the old ones would pull them back
        for param, index in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
            state = trainer.optimizer.state.get(param, {})
            for name in ("exp_avg", "exp_avg_sq"):
                if name in state:
                    state[name][index] = 0.0
        trainer.tokens_since_fired[dead] = 0
        return int(dead.numel())

    # ----- SAELens cfg.json ----------------------------------------------------------------
    @classmethod
    def read_saelens(cls, cfg: Mapping[str, Any], d_sae: int, cfg_path: Path) -> dict[str, Any]:
        activation = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu")) or "relu"
        if activation not in ("relu", None):
            raise LayerscopeError(
                f"{cfg_path}: activation_fn={activation!r} is not supported for a standard SAE (relu only)"
            )
        return {}


register_architecture("standard", Standard)
