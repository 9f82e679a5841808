"""SAETrainer: trains one SAE from an iterator of (batch, d_in) activation tensors.

The trainer knows nothing of where batches come from (see batches.py for a run's tokens).
What differs between architectures (the reconstruction, the auxiliary loss, decoder
constraints, dead-latent revival) is asked of the SAE's `Architecture`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from core.analysis.sae.config import SAEConfig
from core.analysis.sae.history import TrainingHistory
from core.analysis.sae.model import SparseAutoencoder
from core.analysis.sae.scaler import expected_average_scale
from core.device import pick_device
from core.errors import LayerscopeError

TrainProgress = Callable[[int, int, Mapping[str, float]], None]
"""progress(step, total_steps, metrics): metrics holds the latest logged values of HISTORY_FIELDS."""


class SAETrainingStopped(LayerscopeError):
    """Training hit a non-finite loss; `sae` is the last good checkpoint (weights folded), `history` the curves."""

    def __init__(self, message: str, sae: SparseAutoencoder | None, history: TrainingHistory) -> None:
        super().__init__(message)
        self.sae = sae
        self.history = history


class SAETrainer:
    """Trains one SAE from an iterator of (batch, d_in) activation tensors; knows nothing of their source.

    trainer = SAETrainer(config, d_in); sae, history = trainer.fit(batches, progress=...)
    `step(batch)` runs one optimiser step on a (normalised) batch and returns its metrics.
    """

    def __init__(
        self,
        config: SAEConfig,
        d_in: int,
        *,
        device: str | torch.device | None = None,
        log_every: int = 10,
        checkpoint_every: int = 50,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        config.check_for(d_in)
        self.config = config
        self.d_in = int(d_in)
        self.device = pick_device(device)
        self.log_every = max(1, int(log_every))
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.sae = self._initial_sae(info)
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=config.lr, betas=(0.9, 0.999), foreach=True)
        self.tokens_since_fired = torch.zeros(self.sae.d_sae, dtype=torch.long, device=self.device)
        self.tokens_seen = 0
        self.step_count = 0
        self.scale = 1.0
        self.history = TrainingHistory()

    def _initial_sae(self, info: Mapping[str, Any] | None) -> SparseAutoencoder:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        sae = SparseAutoencoder(self.d_in, cfg.width(self.d_in), architecture=cfg.architecture,
                                info=info, **cfg.architecture_options())
        bound = 1.0 / math.sqrt(self.d_in)
        W_dec = torch.empty(sae.d_sae, self.d_in).uniform_(-bound, bound, generator=generator)
        W_dec *= sae.arch.initial_decoder_norm / W_dec.norm(dim=1, keepdim=True)
        with torch.no_grad():
            sae.W_dec.copy_(W_dec)
            sae.W_enc.copy_(W_dec.T)
        return sae.to(self.device)

    # ----- one step ---------------------------------------------------------------------
    def _lr_at(self, step: int) -> float:
        total = self.config.total_steps
        decay_from = int(total * 0.8)
        if step < decay_from:
            return self.config.lr
        return self.config.lr * max(0.0, (total - step) / max(1, total - decay_from))

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        """One optimiser step on a (batch, d_in) tensor already scaled; returns loss, mse, aux, l0, fve."""
        sae, arch = self.sae, self.sae.arch
        x = batch.to(self.device, torch.float32)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_at(self.step_count)
        pre = sae.pre_activations(x)  # (batch, d_sae)
        dead = self.tokens_since_fired >= self.config.dead_window
        forward = arch.training_forward(sae, pre)
        residual = x - forward.recon  # (batch, d_in)
        mse = residual.pow(2).sum(-1).mean()
        aux, weight = arch.penalty(self, pre, residual, forward, dead)
        loss = mse + weight * aux
        if not torch.isfinite(loss):
            nan = float("nan")
            return {"loss": float(loss.detach()), "mse": float(mse.detach()), "aux": nan, "l0": nan, "fve": nan}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        arch.after_backward(sae)
        self.optimizer.step()
        with torch.no_grad():
            arch.after_step(sae)
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[forward.fired] = 0
            total = (x - x.mean(0)).pow(2).sum()
            fve = 1.0 - float(residual.pow(2).sum() / total) if total > 0 else float("nan")
            l0 = float(forward.n_active) / x.shape[0]
        self.tokens_seen += x.shape[0]
        self.step_count += 1
        return {"loss": float(loss.detach()), "mse": float(mse.detach()), "aux": float(aux.detach()), "l0": l0,
                "fve": fve}

    # ----- the loop -----------------------------------------------------------------------
    def _checkpoint(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.sae.state_dict().items()}

    def _finished_sae(self, state: Mapping[str, torch.Tensor] | None = None) -> SparseAutoencoder:
        """A copy of the SAE (or of a checkpoint) on the CPU with the input scale folded into its weights."""
        sae = copy.deepcopy(self.sae).cpu()
        if state is not None:
            sae.load_state_dict({k: v.cpu() for k, v in state.items()})
        sae.fold_scaling_factor(self.scale)
        sae.normalize_activations = "none"
        return sae.eval().requires_grad_(False)

    def fit(
        self, batches: Iterator[torch.Tensor], *, progress: TrainProgress | None = None
    ) -> tuple[SparseAutoencoder, TrainingHistory]:
        """Train for config.total_steps batches (fewer if the iterator ends); returns (sae, history).

        The returned SAE takes raw activations (the normalisation factor is folded in) and lives
        on the CPU. A non-finite loss stops training and raises SAETrainingStopped carrying the
        last good checkpoint. An exception from `progress` (a user's cancel) propagates as is.
        """
        cfg = self.config
        total = cfg.total_steps
        batches = iter(batches)
        first = [b for _, b in zip(range(min(total, 8)), batches)]
        if not first:
            raise LayerscopeError("the activation iterator gave no batches; is the training split empty?")
        for b in first:
            if b.ndim != 2 or b.shape[1] != self.d_in:
                raise LayerscopeError(f"activation batches must be (batch, {self.d_in}); got {tuple(b.shape)}")
        self.scale = expected_average_scale(first, self.d_in, cfg.normalize_activations)
        self.history.norm_scaling_factor = self.scale
        with torch.no_grad():  # start b_dec at the mean, so the first steps do not spend themselves on it
            mean = torch.cat(first).float().to(self.device).mean(0) * self.scale
            if bool(torch.isfinite(mean).all()):
                self.sae.b_dec.copy_(mean)
        good_state, good_step = self._checkpoint(), 0
        revive_at = self.sae.arch.revival_steps(total) if cfg.revive_dead else set()
        self.sae.train()
        for batch in _chain(first, batches):
            if self.step_count >= total:
                break
            x = batch.to(self.device, torch.float32) * self.scale
            metrics = self.step(x)
            if not math.isfinite(metrics["loss"]):
                self.history.stopped = (
                    f"the loss became {metrics['loss']} at step {self.step_count + 1} of {total} (lr={cfg.lr:g}; "
                    "NaN or inf activations, or a learning rate too high); training stopped and the checkpoint "
                    f"from step {good_step} was kept"
                )
                self.history.steps = self.step_count
                sae = self._finished_sae(good_state) if good_step > 0 else None
                raise SAETrainingStopped(self.history.stopped, sae, self.history)
            if self.step_count in revive_at and self.tokens_seen >= cfg.dead_window:
                self.history.resampled += self.sae.arch.revive(self, x)
            if self.step_count % self.checkpoint_every == 0:
                good_state, good_step = self._checkpoint(), self.step_count
            if self.step_count % self.log_every == 0 or self.step_count == total:
                self._log(metrics)
                if progress is not None:
                    progress(self.step_count, total, self.history.latest())
        if self.step_count < total:
            self.history.stopped = f"the activation iterator ended after {self.step_count} of {total} steps"
        if not self.history.tokens or self.history.tokens[-1] != self.tokens_seen:
            self._log(metrics)
        self.history.steps = self.step_count
        return self._finished_sae(), self.history

    def _log(self, metrics: Mapping[str, float]) -> None:
        h = self.history
        dead = self.tokens_since_fired >= self.config.dead_window
        h.tokens.append(self.tokens_seen)
        for name in ("loss", "mse", "aux", "l0", "fve"):
            getattr(h, name).append(float(metrics[name]))
        h.dead_share.append(float(dead.float().mean()) if self.tokens_seen >= self.config.dead_window else 0.0)
        h.lr.append(self.optimizer.param_groups[0]["lr"])


def _chain(first: list[torch.Tensor], rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield from first
    yield from rest


def train_sae(
    batches: Iterator[torch.Tensor],
    d_in: int,
    config: SAEConfig,
    *,
    device: str | torch.device | None = None,
    progress: TrainProgress | None = None,
    info: Mapping[str, Any] | None = None,
) -> tuple[SparseAutoencoder, TrainingHistory]:
    """Train an SAE on (batch, d_in) tensors from `batches`; see SAETrainer.fit."""
    return SAETrainer(config, d_in, device=device, info=info).fit(batches, progress=progress)
