"""Sparse autoencoders on one layer's token activations, in SAELens' on-disk format.

Two architectures (METRICS.md, "Sparse autoencoders"):

* ``"topk"`` (Gao et al. 2024): f = ReLU(TopK(W_enc^T (x - b_dec) + b_enc)), exactly the k
  largest pre-activations survive; decoder rows kept at unit norm; dead latents are
  revived with the AuxK loss (the top ``d_in // 2`` dead latents reconstruct the residual).
* ``"standard"`` (ReLU + L1, Bricken et al. 2023, with the April 2024 update's L1 weighted by
  decoder norms): f = ReLU(W_enc^T (x - b_dec) + b_enc), loss = |x - x_hat|^2 +
  l1 * sum_i f_i |W_dec,i|; dead latents are resampled towards badly reconstructed inputs at
  1/4, 1/2 and 3/4 of training.

Both reconstruct x_hat = W_dec^T f + b_dec. Names and shapes follow SAELens: W_enc (d_in, d_sae),
b_enc (d_sae,), W_dec (d_sae, d_in), b_dec (d_in,). Inputs are scaled during training so that
their mean norm is sqrt(d_in) (SAELens' ``normalize_activations="expected_average_only_in"``);
the factor is folded into the weights afterwards, so a saved SAE takes raw activations.

On disk an SAE is a folder ``cfg.json`` + ``sae_weights.safetensors`` that SAELens'
``SAE.load_from_disk`` reads (6.x layout: flat ``d_in``/``d_sae``/``architecture``/``k`` plus a
``metadata`` dict; pre-6 keys such as ``hook_name`` and ``activation_fn_kwargs`` are written
too, so older readers find them), and SAELens folders of architecture standard, topk or
jumprelu load here. In the workspace an SAE is a result entry ``results/sae/<key>/`` holding
that folder's two files plus meta.json (run, layer, config, evaluation, checksums) and the
training curves as .npy.

Evaluation (held-out inputs of the run): fraction of variance explained 1 - SSE / SST,
mean L0, the share of latents never active on the held-out tokens, and for a causal LM the
next-token loss with the layer's output replaced by its reconstruction, against the clean
loss and the loss with the layer zero-ablated.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.device import pick_device
from core.errors import DamagedEntryError, LayerscopeError
from core.store import Store, atomic_entry, file_sha256, make_key, read_json, verify_entry

if TYPE_CHECKING:
    from core.activations import Activations
    from core.models import LoadedModel

logger = logging.getLogger(__name__)

SAE_VERSION = 1  # bump when training or evaluation changes: invalidates stored SAEs
SAE_KIND = "sae"  # result kind in the store
CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"  # the cfg.json layout written (SAELens reads >= 6 as its own layout)
ARCHITECTURES = {
    "topk": "TopK (Gao et al. 2024): exactly k latents active per token",
    "standard": "ReLU + L1 penalty (Bricken et al. 2023)",
}
LOADABLE_ARCHITECTURES = ("standard", "topk", "jumprelu")
NORMALIZATIONS = ("expected_average_only_in", "none")
RUNTIME_NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")
HISTORY_FIELDS = ("tokens", "loss", "mse", "aux", "l0", "fve", "dead_share", "lr")

TrainProgress = Callable[[int, int, Mapping[str, float]], None]
"""progress(step, total_steps, metrics): metrics holds the latest logged values of HISTORY_FIELDS."""


# ----- configuration ---------------------------------------------------------------------
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
        # one spelling per value (4 and 4.0, numpy and Python numbers), so equal configs share a store key
        for name in ("expansion", "l1_coefficient", "lr", "held_out_fraction", "aux_k_coefficient"):
            value = getattr(self, name)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        for name in ("k", "batch_size", "training_tokens", "seed", "dead_window"):
            value = getattr(self, name)
            if isinstance(value, np.integer):
                object.__setattr__(self, name, int(value))
        if self.architecture not in ARCHITECTURES:
            raise LayerscopeError(
                f"architecture={self.architecture!r} is not supported; choose one of {', '.join(ARCHITECTURES)}"
            )
        _require_number("expansion", self.expansion, low=1.0, why="a width smaller than d is not overcomplete; "
                        "use expansion >= 1 (typical: 4 to 32)")
        _require_int("k", self.k, low=1)
        _require_number("l1_coefficient", self.l1_coefficient, low=0.0)
        _require_number("lr", self.lr, low=0.0, strict=True)
        _require_int("batch_size", self.batch_size, low=1)
        _require_int("training_tokens", self.training_tokens, low=self.batch_size,
                     why=f"train on at least one batch ({self.batch_size} tokens)")
        _require_int("seed", self.seed, low=0)
        if self.normalize_activations not in NORMALIZATIONS:
            raise LayerscopeError(
                f"normalize_activations={self.normalize_activations!r} must be one of {', '.join(NORMALIZATIONS)}"
            )
        if not (isinstance(self.held_out_fraction, (int, float)) and 0.0 < self.held_out_fraction < 1.0):
            raise LayerscopeError(f"held_out_fraction={self.held_out_fraction!r} must be between 0 and 1 (exclusive)")
        _require_int("dead_window", self.dead_window, low=1)
        _require_number("aux_k_coefficient", self.aux_k_coefficient, low=0.0)

    def width(self, d_in: int) -> int:
        """d_sae for inputs of width d_in."""
        return round(self.expansion * d_in)

    def check_for(self, d_in: int) -> None:
        """Raise LayerscopeError if this config cannot build an SAE on d_in-wide inputs."""
        width = self.width(d_in)
        if width < d_in:
            raise LayerscopeError(f"width {width} is smaller than the layer's width d={d_in}; use expansion >= 1")
        if self.architecture == "topk" and self.k > width:
            raise LayerscopeError(
                f"k={self.k} is larger than the width {width} ({self.expansion:g} x d={d_in}); "
                f"k must be at most the number of latents (typical: 16 to 128)"
            )

    @property
    def total_steps(self) -> int:
        return max(1, self.training_tokens // self.batch_size)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SAEConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


def _require_int(name: str, value: Any, *, low: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LayerscopeError(f"{name}={value!r} must be an integer >= {low}" + (f": {why}" if why else ""))


def _require_number(name: str, value: Any, *, low: float, strict: bool = False, why: str = "") -> None:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise LayerscopeError(f"{name}={value!r} must be a number {bound}" + (f": {why}" if why else ""))


# ----- the autoencoder -------------------------------------------------------------------
class SparseAutoencoder(nn.Module):
    """An SAE with SAELens' parameter names and shapes; `info` carries cfg.json's metadata.

    W_enc (d_in, d_sae), b_enc (d_sae,), W_dec (d_sae, d_in), b_dec (d_in,),
    threshold (d_sae,) for jumprelu SAEs loaded from SAELens.
    """

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        architecture: str = "topk",
        k: int | None = None,
        apply_b_dec_to_input: bool = True,
        normalize_activations: str = "none",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if architecture not in LOADABLE_ARCHITECTURES:
            raise LayerscopeError(
                f"architecture={architecture!r} is not supported; Layerscope reads {', '.join(LOADABLE_ARCHITECTURES)}"
            )
        if architecture == "topk" and (k is None or not 1 <= int(k) <= d_sae):
            raise LayerscopeError(f"a topk SAE needs 1 <= k <= d_sae={d_sae}; got k={k!r}")
        if normalize_activations not in RUNTIME_NORMALIZATIONS:
            raise LayerscopeError(
                f"normalize_activations={normalize_activations!r} is not supported; "
                f"expected one of {', '.join(RUNTIME_NORMALIZATIONS)}"
            )
        self.d_in, self.d_sae = int(d_in), int(d_sae)
        self.architecture = architecture
        self.k = int(k) if architecture == "topk" else None
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.normalize_activations = normalize_activations
        self.info = dict(info or {})
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(d_sae))

    def extra_repr(self) -> str:
        k = f", k={self.k}" if self.k else ""
        return f"{self.architecture}, d_in={self.d_in}, d_sae={self.d_sae}{k}"

    def _normalise_in(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        if self.normalize_activations == "constant_norm_rescale":
            coeff = self.d_in**0.5 / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return x * coeff, coeff
        if self.normalize_activations == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            std = (x - mu).std(dim=-1, keepdim=True)
            return (x - mu) / (std + 1e-5), (mu, std)
        return x, None

    def _normalise_out(self, x: torch.Tensor, state: Any) -> torch.Tensor:
        if self.normalize_activations == "constant_norm_rescale":
            return x / state
        if self.normalize_activations == "layer_norm":
            mu, std = state
            return x * std + mu
        return x

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> (n, d_sae) encoder pre-activations W_enc^T (x - b_dec) + b_enc (x already normalised)."""
        centred = x - self.b_dec if self.apply_b_dec_to_input else x
        return torch.addmm(self.b_enc, centred, self.W_enc)  # bias fused into the matmul

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """(n, d_sae) pre-activations -> sparse latent activations."""
        if self.architecture == "topk":
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
        if self.architecture == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold)
        return torch.relu(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) raw activations -> (n, d_sae) latent activations (>= 0)."""
        x, _ = self._normalise_in(x.to(self.W_enc.dtype))
        return self.activate(self.pre_activations(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """(n, d_sae) latents -> (n, d_in) reconstruction (before any run-time de-normalisation)."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> (n, d_in) reconstruction of x."""
        x = x.to(self.W_enc.dtype)
        normed, state = self._normalise_in(x)
        return self._normalise_out(self.decode(self.activate(self.pre_activations(normed))), state)

    @torch.no_grad()
    def fold_scaling_factor(self, scale: float) -> None:
        """Fold an input scale s into the weights: the SAE then takes x where it took s * x."""
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)  # pre-activations, hence a jumprelu threshold, are unchanged


# ----- training ----------------------------------------------------------------------------
@dataclass
class TrainingHistory:
    """Training curves, one entry per logged step; `stopped` says why training ended early, if it did."""

    tokens: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    aux: list[float] = field(default_factory=list)  # L1 penalty (standard) or AuxK loss (topk)
    l0: list[float] = field(default_factory=list)
    fve: list[float] = field(default_factory=list)  # on the training batch
    dead_share: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    stopped: str = ""
    norm_scaling_factor: float = 1.0
    steps: int = 0
    resampled: int = 0  # latents resampled (standard)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {f"history_{name}": np.asarray(getattr(self, name), dtype=np.float64) for name in HISTORY_FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> TrainingHistory:
        history = cls(**{
            name: np.asarray(arrays[f"history_{name}"]).tolist() for name in HISTORY_FIELDS
            if f"history_{name}" in arrays
        })
        info = meta.get("training", {})
        history.stopped = info.get("stopped", "")
        history.norm_scaling_factor = float(info.get("norm_scaling_factor", 1.0))
        history.steps = int(info.get("steps", 0))
        history.resampled = int(info.get("resampled", 0))
        return history


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
                                k=cfg.k if cfg.architecture == "topk" else None, info=info)
        bound = 1.0 / math.sqrt(self.d_in)
        W_dec = torch.empty(sae.d_sae, self.d_in).uniform_(-bound, bound, generator=generator)
        # topk: unit-norm decoder rows (Gao et al.); standard: rows of norm 0.1 (Conerly et al., SAELens)
        W_dec *= (1.0 if cfg.architecture == "topk" else 0.1) / W_dec.norm(dim=1, keepdim=True)
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
        cfg, sae = self.config, self.sae
        x = batch.to(self.device, torch.float32)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_at(self.step_count)
        pre = sae.pre_activations(x)  # (batch, d_sae)
        dead = self.tokens_since_fired >= cfg.dead_window
        if cfg.architecture == "topk":
            top = pre.topk(sae.k, dim=-1)
            values = torch.relu(top.values)  # (batch, k)
            # decode from the k survivors only: a weighted bag of k decoder rows per token, whose
            # backward is a sparse accumulation instead of a (batch, k, d_in) gather
            recon = F.embedding_bag(top.indices, sae.W_dec, per_sample_weights=values, mode="sum") + sae.b_dec
            active = top.indices[values > 0]  # latent ids that fired, with repeats
            n_active = (values > 0).sum()
        else:
            acts = torch.relu(pre)
            recon = sae.decode(acts)
            active = torch.nonzero(acts > 0)[:, 1]
            n_active = (acts > 0).sum()
        residual = x - recon  # (batch, d_in)
        mse = residual.pow(2).sum(-1).mean()
        if cfg.architecture == "topk":
            aux = self._aux_k_loss(pre, residual.detach(), dead) if cfg.revive_dead else mse.new_zeros(())
            loss = mse + cfg.aux_k_coefficient * aux
        else:
            warmup = min(1.0, (self.step_count + 1) / max(1, int(0.05 * cfg.total_steps)))
            aux = (acts * sae.W_dec.norm(dim=1)).sum(-1).mean()
            loss = mse + warmup * cfg.l1_coefficient * aux
        if not torch.isfinite(loss):
            nan = float("nan")
            return {"loss": float(loss.detach()), "mse": float(mse.detach()), "aux": nan, "l0": nan, "fve": nan}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.architecture == "topk":
            self._project_decoder_grad()
        self.optimizer.step()
        with torch.no_grad():
            if cfg.architecture == "topk":
                sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[active] = 0
            total = (x - x.mean(0)).pow(2).sum()
            fve = 1.0 - float(residual.pow(2).sum() / total) if total > 0 else float("nan")
            l0 = float(n_active) / x.shape[0]
        self.tokens_seen += x.shape[0]
        self.step_count += 1
        return {"loss": float(loss.detach()), "mse": float(mse.detach()), "aux": float(aux.detach()), "l0": l0,
                "fve": fve}

    def _aux_k_loss(self, pre: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        """AuxK (Gao et al. 2024, App. B.1): the top dead latents reconstruct what the live ones missed."""
        n_dead = int(dead.sum())
        if n_dead == 0:
            return pre.new_zeros(())
        k_aux = min(self.d_in // 2, n_dead)
        masked = torch.where(dead[None], pre, torch.full_like(pre, -torch.inf))
        top = masked.topk(k_aux, dim=-1)
        aux_acts = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
        aux_recon = aux_acts @ self.sae.W_dec  # (batch, d_in), no bias: it reconstructs a residual
        return (aux_recon - residual).pow(2).sum(-1).mean() * min(1.0, n_dead / k_aux)

    def _project_decoder_grad(self) -> None:
        """Remove the gradient component along each (unit) decoder row, so the step keeps rows on the sphere."""
        W, grad = self.sae.W_dec, self.sae.W_dec.grad
        if grad is not None:
            grad -= (grad * W).sum(dim=1, keepdim=True) * W

    @torch.no_grad()
    def _resample_dead(self, x: torch.Tensor) -> int:
        """Bricken et al. 2023: point dead latents at inputs the SAE reconstructs worst; returns how many."""
        sae = self.sae
        dead = torch.nonzero(self.tokens_since_fired >= self.config.dead_window).flatten()
        if dead.numel() == 0:
            return 0
        losses = (sae.decode(sae.activate(sae.pre_activations(x))) - x).pow(2).sum(-1)  # (batch,)
        if not bool(torch.isfinite(losses).all()) or float(losses.sum()) <= 0:
            return 0
        generator = torch.Generator(device="cpu").manual_seed(self.config.seed + self.step_count)
        picks = torch.multinomial((losses**2).cpu(), dead.numel(), replacement=True, generator=generator)
        directions = x[picks.to(x.device)] - sae.b_dec
        directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        alive = self.tokens_since_fired < self.config.dead_window
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
        sae.W_dec[dead] = directions * 0.1
        sae.W_enc[:, dead] = directions.T * enc_norm * 0.2
        sae.b_enc[dead] = 0.0
        for param, index in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
            state = self.optimizer.state.get(param, {})
            for name in ("exp_avg", "exp_avg_sq"):
                if name in state:
                    state[name][index] = 0.0
        self.tokens_since_fired[dead] = 0
        return int(dead.numel())

    # ----- the loop -----------------------------------------------------------------------
    def _estimate_scale(self, first: list[torch.Tensor]) -> float:
        if self.config.normalize_activations == "none":
            return 1.0
        norms = torch.cat([b.float().norm(dim=1) for b in first])
        norms = norms[torch.isfinite(norms)]
        mean = float(norms.mean()) if norms.numel() else 0.0
        if not mean > 0:
            raise LayerscopeError("the activations are all zero (or not finite); there is nothing for an SAE to learn")
        return math.sqrt(self.d_in) / mean

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
        self.scale = self._estimate_scale(first)
        self.history.norm_scaling_factor = self.scale
        with torch.no_grad():  # start b_dec at the mean, so the first steps do not spend themselves on it
            mean = torch.cat(first).float().to(self.device).mean(0) * self.scale
            if bool(torch.isfinite(mean).all()):
                self.sae.b_dec.copy_(mean)
        good_state, good_step = self._checkpoint(), 0
        resample_at = {total // 4, total // 2, (3 * total) // 4} if cfg.architecture == "standard" else set()
        stream = _chain(first, batches)
        self.sae.train()
        for batch in stream:
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
            if cfg.revive_dead and self.step_count in resample_at and self.tokens_seen >= cfg.dead_window:
                self.history.resampled += self._resample_dead(x)
            if self.step_count % self.checkpoint_every == 0:
                good_state, good_step = self._checkpoint(), self.step_count
            if self.step_count % self.log_every == 0 or self.step_count == total:
                self._log(metrics)
                if progress is not None:
                    progress(self.step_count, total, self._latest())
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

    def _latest(self) -> dict[str, float]:
        return {name: float(getattr(self.history, name)[-1]) for name in HISTORY_FIELDS}


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


# ----- activations from a run ----------------------------------------------------------------
def check_tokens_run(acts: Activations, layer: str | None = None) -> None:
    """Raise LayerscopeError unless `acts` holds per-token activations (and `layer`, if given)."""
    if not acts.is_tokens:
        raise LayerscopeError(
            f"SAEs are trained on per-token activations, but run {acts.key} ({acts.model_name} on "
            f"{acts.dataset_name}) used pooling={acts.pooling!r}; extract the run again with pooling='tokens'"
        )
    if layer is not None and layer not in acts.layer_names:
        raise LayerscopeError(f"layer {layer!r} is not in run {acts.key}; it has {', '.join(acts.layer_names)}")


def token_rows(acts: Activations, inputs: np.ndarray | None = None, *, exclude_first_token: bool = True) -> np.ndarray:
    """(m,) sorted token rows of the given inputs (all inputs by default), without first tokens if asked."""
    offsets = acts.offsets
    inputs = np.arange(acts.n_inputs) if inputs is None else np.sort(np.asarray(inputs, dtype=np.int64))
    starts = offsets[inputs] + (1 if exclude_first_token else 0)
    ends = offsets[inputs + 1]
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = ends - starts
    rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    return rows.astype(np.int64)


def held_out_split(n_inputs: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_inputs, held_out_inputs): a seeded split of whole inputs, at least one in each part."""
    if n_inputs < 2:
        raise LayerscopeError(f"an SAE needs at least 2 inputs (one to train on, one to evaluate); the run has {n_inputs}")
    order = np.random.default_rng(seed).permutation(n_inputs)
    n_held = min(n_inputs - 1, max(1, round(fraction * n_inputs)))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def activation_batches(
    values: np.ndarray,
    rows: np.ndarray,
    *,
    batch_size: int,
    seed: int = 0,
    epochs: int | None = None,
    shuffle: bool = True,
    buffer_bytes: int = 256 * 2**20,
) -> Iterator[torch.Tensor]:
    """Shuffled (batch_size, d) float32 batches of `values[rows]`, read from a memory map in blocks.

    Rows are read a block of neighbouring rows at a time (close to sequential on disk) and
    shuffled within a buffer of about `buffer_bytes`; block order is shuffled every epoch.
    epochs=None repeats forever. The last, smaller batch of a non-shuffled pass is kept.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        return
    d = values.shape[1]
    per_buffer = max(batch_size, int(buffer_bytes // (4 * d)) // batch_size * batch_size)
    blocks = [rows[i : i + per_buffer] for i in range(0, rows.size, per_buffer)]
    rng = np.random.default_rng(seed)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = rng.permutation(len(blocks)) if shuffle else np.arange(len(blocks))
        carry = np.zeros((0, d), dtype=np.float32)
        for b in order:
            data = np.asarray(values[blocks[b]], dtype=np.float32)
            if shuffle:
                data = data[rng.permutation(len(data))]
            data = np.concatenate([carry, data]) if carry.size else data
            n_full = len(data) // batch_size * batch_size
            for i in range(0, n_full, batch_size):
                yield torch.from_numpy(np.ascontiguousarray(data[i : i + batch_size]))
            carry = data[n_full:]
        if len(carry) and (not shuffle or epochs is not None and epoch == epochs - 1):
            yield torch.from_numpy(np.ascontiguousarray(carry))
        epoch += 1


# ----- evaluation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SAEEvaluation:
    """Held-out quality of one SAE; the loss fields are None unless a causal LM was run."""

    fve: float  # fraction of variance explained, 1 - SSE / SST
    mse: float  # mean squared error per token, summed over dimensions
    l0: float  # mean number of active latents per token
    dead_share: float  # share of latents never active on the evaluation tokens
    n_dead: int
    n_tokens: int
    loss_clean: float | None = None  # next-token cross-entropy (nats) of the model as is
    loss_with_sae: float | None = None  # with the layer's output replaced by the SAE reconstruction
    loss_zero_ablation: float | None = None  # with the layer's output set to zero
    n_loss_texts: int = 0

    @property
    def loss_increase(self) -> float | None:
        if self.loss_clean is None or self.loss_with_sae is None:
            return None
        return self.loss_with_sae - self.loss_clean

    @property
    def loss_recovered(self) -> float | None:
        """(L_zero - L_sae) / (L_zero - L_clean): 1 = the reconstruction loses nothing, 0 = no better than zeros."""
        if None in (self.loss_clean, self.loss_with_sae, self.loss_zero_ablation):
            return None
        gap = self.loss_zero_ablation - self.loss_clean
        return (self.loss_zero_ablation - self.loss_with_sae) / gap if gap > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loss_increase": self.loss_increase, "loss_recovered": self.loss_recovered}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SAEEvaluation:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


@torch.no_grad()
def evaluate_sae(
    sae: SparseAutoencoder, batches: Iterable[torch.Tensor], *, device: str | torch.device | None = None
) -> SAEEvaluation:
    """FVE, MSE, L0 and dead share of `sae` over (batch, d_in) tensors, accumulated in float64."""
    dev = pick_device(device)
    sae = sae.to(dev).eval()
    n = 0
    sum_x = torch.zeros(sae.d_in, dtype=torch.float64, device=dev)
    sum_sq = torch.zeros((), dtype=torch.float64, device=dev)
    sse = torch.zeros((), dtype=torch.float64, device=dev)
    active = torch.zeros((), dtype=torch.float64, device=dev)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=dev)
    for batch in batches:
        x = batch.to(dev, torch.float32)
        if x.ndim != 2 or x.shape[1] != sae.d_in:
            raise LayerscopeError(f"the SAE takes {sae.d_in}-wide inputs; got a batch of shape {tuple(x.shape)}")
        normed, state = sae._normalise_in(x)
        acts = sae.activate(sae.pre_activations(normed))
        recon = sae._normalise_out(sae.decode(acts), state)
        x64 = x.double()
        n += x.shape[0]
        sum_x += x64.sum(0)
        sum_sq += x64.pow(2).sum()
        sse += (x64 - recon.double()).pow(2).sum()
        active += (acts > 0).sum()
        fired |= (acts > 0).any(0)
    if n == 0:
        raise LayerscopeError("no evaluation tokens: the held-out split is empty")
    sst = float(sum_sq - sum_x.pow(2).sum() / n)
    n_dead = int((~fired).sum())
    return SAEEvaluation(
        fve=1.0 - float(sse) / sst if sst > 0 else float("nan"),
        mse=float(sse) / n,
        l0=float(active) / n,
        dead_share=n_dead / sae.d_sae,
        n_dead=n_dead,
        n_tokens=n,
    )


def next_token_losses(
    sae: SparseAutoencoder,
    model: LoadedModel,
    layer: str,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    exclude_first_token: bool = True,
) -> dict[str, float]:
    """Mean next-token cross-entropy (nats per predicted token) over `texts`: clean, SAE-spliced, zero-ablated.

    The SAE reconstruction replaces `layer`'s output at every position (the first token's is
    kept when the SAE was trained without first tokens); the rest of the model runs as usual.
    """
    if not model.is_causal_lm or model.tokenizer is None:
        raise LayerscopeError(f"model {model.name!r} is not a causal LM; the next-token loss needs one such as smollm2")
    modules = dict(model.module.named_modules())
    if layer not in modules:
        raise LayerscopeError(f"layer {layer!r} is not a module of {model.name!r}")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise LayerscopeError("no texts to measure the next-token loss on")
    device = model.device
    spliced = copy.deepcopy(sae).to(device).eval()
    max_length = int(max_length or model.max_length)
    tokenizer = model.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids = [tokenizer(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    ids = [i for i in ids if len(i) >= 2]
    if not ids:
        raise LayerscopeError("every text has fewer than 2 tokens; the next-token loss needs at least one prediction")
    mode = {"value": "clean"}

    def hook(_module, _inputs, output):
        if mode["value"] == "clean":
            return None
        hidden = output[0] if isinstance(output, (tuple, list)) else output  # (batch, tokens, d)
        if hidden.shape[-1] != spliced.d_in:
            raise LayerscopeError(
                f"layer {layer!r} outputs width {hidden.shape[-1]} but the SAE takes d_in={spliced.d_in}"
            )
        if mode["value"] == "sae":
            new = spliced(hidden.reshape(-1, hidden.shape[-1]).float()).reshape(hidden.shape).to(hidden.dtype)
        else:
            new = torch.zeros_like(hidden)
        if exclude_first_token:
            new[:, 0] = hidden[:, 0]
        if isinstance(output, tuple):
            return (new, *output[1:])
        if isinstance(output, list):
            return [new, *output[1:]]
        return new

    totals = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    count = 0
    handle = modules[layer].register_forward_hook(hook)
    try:
        with torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                chunk = ids[start : start + batch_size]
                width = max(len(i) for i in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, seq in enumerate(chunk):
                    input_ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                input_ids, mask = input_ids.to(device), mask.to(device)
                targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
                for name in totals:
                    mode["value"] = name
                    logits = model.module(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
                    loss = torch.nn.functional.cross_entropy(
                        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                        ignore_index=-100, reduction="sum",
                    )
                    totals[name] += float(loss)
                count += int((targets != -100).sum())
    finally:
        handle.remove()
    return {"clean": totals["clean"] / count, "sae": totals["sae"] / count, "zero": totals["zero"] / count,
            "n_texts": len(ids)}


# ----- SAELens on-disk format ----------------------------------------------------------------
_METADATA_KEYS = ("model_name", "hook_name", "hook_head_index", "prepend_bos", "context_size", "dataset_path",
                  "model_from_pretrained_kwargs", "neuronpedia_id", "sae_lens_version", "sae_lens_training_version")


def _hook_layer(hook_name: str) -> int:
    numbers = re.findall(r"\d+", hook_name or "")
    return int(numbers[-1]) if numbers else 0


def saelens_config(sae: SparseAutoencoder) -> dict[str, Any]:
    """cfg.json for `sae`: SAELens 6 keys, with the pre-6 keys alongside for older readers."""
    info = sae.info
    hook_name = str(info.get("hook_name", ""))
    metadata = {
        "model_name": info.get("model_name"),
        "hook_name": hook_name,
        "hook_head_index": None,
        "prepend_bos": bool(info.get("prepend_bos", True)),
        "context_size": info.get("context_size"),
        "dataset_path": info.get("dataset_path"),
        "model_from_pretrained_kwargs": {},
        "neuronpedia_id": None,
        "sae_lens_version": SAELENS_FORMAT_VERSION,
        "sae_lens_training_version": None,
    }
    activation = "topk" if sae.architecture == "topk" else "relu"
    cfg: dict[str, Any] = {
        "architecture": sae.architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": sae.normalize_activations,
        "reshape_activations": "none",
        "metadata": metadata,
        # some 6.x readers look for the version at the top level; pre-6 readers take these top-level keys
        **{key: metadata[key] for key in _METADATA_KEYS},
        "hook_layer": _hook_layer(hook_name),
        "activation_fn_str": activation,
        "activation_fn": activation,
        "activation_fn_kwargs": {"k": sae.k} if sae.k else {},
        "finetuning_scaling_factor": False,
        "dataset_trust_remote_code": True,
        "seqpos_slice": [None],
        "layerscope": {key: value for key, value in info.items() if key not in metadata},
    }
    if sae.architecture == "topk":
        cfg["k"] = sae.k
    return cfg


def save_saelens(sae: SparseAutoencoder, folder: str | os.PathLike) -> Path:
    """Write `sae` as an SAELens folder (cfg.json + sae_weights.safetensors), atomically; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder).expanduser()
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    try:
        _write_saelens_files(sae, tmp, save_file)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _write_saelens_files(sae: SparseAutoencoder, folder: Path, save_file=None) -> None:
    if save_file is None:
        from safetensors.torch import save_file
    tensors = {name: p.detach().cpu().float().contiguous() for name, p in sae.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILENAME))
    (folder / CFG_FILENAME).write_text(json.dumps(saelens_config(sae), indent=1))


def load_saelens(folder: str | os.PathLike) -> SparseAutoencoder:
    """Read an SAELens SAE folder (cfg.json + sae_weights.safetensors) on the CPU in float32.

    Accepts SAELens 6 and pre-6 cfg.json layouts, architectures standard, topk (also the pre-6
    "standard" + activation_fn "topk") and jumprelu. Raises LayerscopeError for a missing or
    unreadable file, an unsupported architecture, or weights whose names or shapes do not match.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise LayerscopeError(f"SAE folder {str(folder)!r} does not exist")
    cfg_path, weights_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise LayerscopeError(
                f"{str(folder)!r} is not an SAELens SAE folder: {path.name} is missing "
                f"(expected {CFG_FILENAME} + {WEIGHTS_FILENAME})"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LayerscopeError(f"{cfg_path} is not valid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise LayerscopeError(f"{cfg_path} must hold a JSON object; got {type(cfg).__name__}")
    d_in, d_sae = cfg.get("d_in"), cfg.get("d_sae")
    for name, value in (("d_in", d_in), ("d_sae", d_sae)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LayerscopeError(f"{cfg_path}: {name}={value!r} must be a positive integer")
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu")) or "relu"
    architecture = cfg.get("architecture", "standard")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if architecture == "standard" and activation == "topk":
        architecture = "topk"  # the pre-6 way of writing a TopK SAE
    if architecture not in LOADABLE_ARCHITECTURES:
        raise LayerscopeError(
            f"{cfg_path}: architecture={architecture!r} is not supported; Layerscope reads "
            f"{', '.join(LOADABLE_ARCHITECTURES)} SAEs"
        )
    if architecture == "standard" and activation not in ("relu", None):
        raise LayerscopeError(f"{cfg_path}: activation_fn={activation!r} is not supported for a standard SAE (relu only)")
    k = cfg.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None) if architecture == "topk" else None
    if architecture == "topk" and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_sae):
        raise LayerscopeError(f"{cfg_path}: a topk SAE needs an integer k between 1 and d_sae={d_sae}; got k={k!r}")
    for key, bad, why in (
        ("rescale_acts_by_decoder_norm", True, "TopK with decoder-norm rescaling"),
        ("finetuning_scaling_factor", True, "a fine-tuning scaling factor"),
        ("reshape_activations", "hook_z", "attention hook_z reshaping"),
    ):
        if cfg.get(key) == bad:
            raise LayerscopeError(f"{cfg_path}: {key}={bad!r} ({why}) is not supported")
    normalize = cfg.get("normalize_activations", "none")
    normalize = {True: "expected_average_only_in", False: "none", None: "none"}.get(normalize, normalize)
    if normalize not in RUNTIME_NORMALIZATIONS:
        raise LayerscopeError(f"{cfg_path}: normalize_activations={normalize!r} is not one of {RUNTIME_NORMALIZATIONS}")
    if normalize == "expected_average_only_in":
        logger.warning("%s: normalize_activations='expected_average_only_in' without a folded scaling factor; "
                       "inputs are used unscaled (as SAELens' load_from_disk does)", folder)
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    info = {
        "model_name": metadata.get("model_name", cfg.get("model_name")),
        "hook_name": metadata.get("hook_name", cfg.get("hook_name", cfg.get("hook_point"))),
        "context_size": metadata.get("context_size", cfg.get("context_size")),
        "dataset_path": metadata.get("dataset_path", cfg.get("dataset_path")),
        "prepend_bos": metadata.get("prepend_bos", cfg.get("prepend_bos", True)),
        **(cfg.get("layerscope") or {}),
    }
    sae = SparseAutoencoder(
        d_in, d_sae, architecture=architecture, k=k, apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        normalize_activations=normalize, info=info,
    )
    tensors = _read_weights(weights_path)
    if "scaling_factor" in tensors and bool(torch.all(tensors["scaling_factor"] == 1)):
        del tensors["scaling_factor"]  # older SAELens wrote an all-ones scaling factor; it changes nothing
    expected = {name: tuple(p.shape) for name, p in sae.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise LayerscopeError(
            f"{weights_path} does not hold the weights of a {architecture} SAE: "
            + (f"missing {', '.join(missing)}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {', '.join(extra)}" if extra else "")
            + f" (expected {', '.join(expected)})"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise LayerscopeError(
                f"{weights_path}: {name} has shape {tuple(tensors[name].shape)} but cfg.json "
                f"(d_in={d_in}, d_sae={d_sae}) needs {shape}"
            )
        if not bool(torch.isfinite(tensors[name]).all()):
            raise LayerscopeError(f"{weights_path}: {name} holds NaN or inf values")
    sae.load_state_dict({name: t.float() for name, t in tensors.items()})
    return sae.eval().requires_grad_(False)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise LayerscopeError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err})") from None


# ----- SAEs in the workspace -------------------------------------------------------------------
@dataclass(eq=False)
class StoredSAE:
    """An SAE entry of the workspace: the autoencoder, where it came from and how good it is."""

    key: str
    path: Path
    sae: SparseAutoencoder
    meta: dict[str, Any]
    history: TrainingHistory

    @property
    def run_key(self) -> str:
        return self.meta["run"]

    @property
    def layer(self) -> str:
        return self.meta["layer"]

    @property
    def config(self) -> SAEConfig | None:
        return SAEConfig.from_dict(self.meta["config"]) if self.meta.get("config") else None

    @property
    def evaluation(self) -> SAEEvaluation:
        return SAEEvaluation.from_dict(self.meta["evaluation"])

    @property
    def exclude_first_token(self) -> bool:
        return bool(self.meta.get("exclude_first_token", True))

    @property
    def label(self) -> str:
        return describe_sae(self.meta)


def describe_sae(meta: Mapping[str, Any]) -> str:
    """One line naming a stored SAE: model · layer · architecture · width · seed and tokens (or "imported")."""
    arch = meta.get("architecture", "?")
    k = f" k={meta['k']}" if meta.get("k") else ""
    config = meta.get("config") or {}
    if meta.get("source") == "imported":
        source = "imported"
    else:
        tokens = int(config.get("training_tokens", 0))
        shown = f"{tokens / 1e6:.3g}M" if tokens >= 1e6 else f"{tokens / 1e3:.3g}k"
        source = f"seed {config.get('seed', 0)} · {shown} tokens"
    return f"{meta.get('model', '?')} · {meta.get('layer', '?')} · {arch}{k} · {meta.get('d_sae', '?')} latents · {source}"


def sae_key(run_key: str, layer: str, config: SAEConfig) -> str:
    return make_key({"kind": SAE_KIND, "run": run_key, "layer": layer, "config": config.as_dict(),
                     "version": SAE_VERSION})


def _sae_dir(store: Store, key: str) -> Path:
    return store.root / "results" / SAE_KIND / key


def _write_entry(store: Store, key: str, sae: SparseAutoencoder, meta: Mapping[str, Any],
                 arrays: Mapping[str, np.ndarray]) -> Path:
    """Write an SAE entry under a temporary name, then rename: a reader never sees half of one."""
    final = _sae_dir(store, key)
    full = {**meta, "kind": SAE_KIND, "key": key, "arrays": list(arrays), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with atomic_entry(final, full) as tmp:
        _write_saelens_files(sae, tmp)
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.asarray(array), allow_pickle=False)
    return final


def list_saes(store: Store) -> list[dict[str, Any]]:
    """Metadata of every complete SAE entry in the workspace, newest first (each with `key`)."""
    folder = store.root / "results" / SAE_KIND
    out = []
    if not folder.is_dir():
        return out
    for entry in folder.iterdir():
        meta_path = entry / "meta.json"
        if entry.name.endswith(".tmp") or not meta_path.is_file():
            continue
        try:
            meta = read_json(meta_path)
        except (OSError, json.JSONDecodeError):
            logger.warning("skipping unreadable SAE metadata %s", meta_path)
            continue
        out.append({**meta, "key": entry.name})
    out.sort(key=lambda m: m.get("created", ""), reverse=True)
    return out


def open_sae(store: Store, key: str) -> StoredSAE:
    """The stored SAE `key` (checksums verified)."""
    folder = _sae_dir(store, key)
    if not (folder / "meta.json").is_file():
        raise LayerscopeError(f"SAE {key!r} is not in the workspace {store.root}; train or import it first")
    meta = read_json(folder / "meta.json")
    try:
        verify_entry(folder, meta.get("checksums", {}))
    except DamagedEntryError as err:
        raise LayerscopeError(f"{err}; delete it and train the SAE again") from None
    sae = load_saelens(folder)
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in meta.get("arrays", [])}
    return StoredSAE(key=key, path=folder, sae=sae, meta=meta, history=TrainingHistory.from_arrays(arrays, meta))


def delete_sae(store: Store, key: str) -> None:
    folder = _sae_dir(store, key)
    if folder.exists():
        shutil.rmtree(folder)


def _run_info(acts: Activations, layer: str) -> dict[str, Any]:
    first_ids = acts.token_ids[acts.offsets[:-1]]
    return {
        "model_name": acts.model_name,
        "hook_name": layer,
        "context_size": acts.meta.get("max_length"),
        "dataset_path": acts.dataset_name,
        "prepend_bos": bool(acts.n_inputs > 1 and np.unique(first_ids).size == 1),  # every input starts alike
        "run": acts.key,
    }


def _entry_meta(acts: Activations, layer: str, sae: SparseAutoencoder) -> dict[str, Any]:
    return {
        "run": acts.key,
        "layer": layer,
        "model": acts.model_name,
        "model_weights": acts.meta["model"].get("weights"),
        "is_causal_lm": bool(acts.meta["model"].get("is_causal_lm")),
        "dataset": acts.dataset_name,
        "dataset_fingerprint": acts.meta["dataset"].get("fingerprint"),
        "architecture": sae.architecture,
        "k": sae.k,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "version": SAE_VERSION,
    }


def _held_out_texts(acts: Activations, inputs: np.ndarray, limit: int) -> list[str]:
    texts = acts.texts
    return [texts[i] for i in inputs[:limit]]


def _check_model_for_run(model: LoadedModel, acts: Activations) -> None:
    expected = acts.meta["model"].get("weights")
    if model.weights_hash != expected:
        raise LayerscopeError(
            f"model {model.name!r} (weights {model.weights_hash[:12]}) is not the model of run {acts.key} "
            f"({acts.model_name}, weights {str(expected)[:12]}); load the run's own model for the next-token loss"
        )


def evaluate_on_run(
    sae: SparseAutoencoder,
    acts: Activations,
    layer: str,
    inputs: np.ndarray,
    *,
    exclude_first_token: bool,
    model: LoadedModel | None = None,
    loss_texts: int = 64,
    batch_size: int = 4096,
    device: str | torch.device | None = None,
) -> SAEEvaluation:
    """Evaluate `sae` on the tokens of `inputs` of a run; with a causal LM, also the next-token losses."""
    rows = token_rows(acts, inputs, exclude_first_token=exclude_first_token)
    result = evaluate_sae(
        sae, activation_batches(acts[layer], rows, batch_size=batch_size, epochs=1, shuffle=False), device=device
    )
    if model is not None and acts.meta["model"].get("is_causal_lm"):
        _check_model_for_run(model, acts)
        losses = next_token_losses(sae, model, layer, _held_out_texts(acts, inputs, loss_texts),
                                   max_length=acts.meta.get("max_length"), exclude_first_token=exclude_first_token)
        result = SAEEvaluation(**{**asdict(result), "loss_clean": losses["clean"], "loss_with_sae": losses["sae"],
                                  "loss_zero_ablation": losses["zero"], "n_loss_texts": losses["n_texts"]})
    return result


def train_sae_on_run(
    acts: Activations,
    layer: str,
    config: SAEConfig,
    *,
    store: Store | None = None,
    device: str | torch.device | None = None,
    model: LoadedModel | None = None,
    loss_texts: int = 64,
    progress: TrainProgress | None = None,
) -> StoredSAE:
    """Train an SAE on `layer` of a tokens run, evaluate it on held-out inputs and store it.

    The same run, layer and config a second time read the store. `model` (the run's own causal
    LM) adds the next-token losses to the evaluation. Nothing is written unless training ends:
    a cancel raised from `progress` leaves the workspace as it was. A non-finite loss stores
    the last good checkpoint (its meta says why training stopped) and raises SAETrainingStopped.
    """
    store = store or Store()
    check_tokens_run(acts, layer)
    d_in = acts.dim(layer)
    config.check_for(d_in)
    key = sae_key(acts.key, layer, config)
    if (_sae_dir(store, key) / "meta.json").is_file():
        try:
            return open_sae(store, key)
        except LayerscopeError as err:
            logger.warning("%s; training again", err)
    train_inputs, held_inputs = held_out_split(acts.n_inputs, config.held_out_fraction, config.seed)
    train_rows = token_rows(acts, train_inputs, exclude_first_token=config.exclude_first_token)
    if train_rows.size == 0:
        raise LayerscopeError(f"run {acts.key} has no training tokens left (inputs of one token, first tokens excluded)")
    batches = activation_batches(acts[layer], train_rows, batch_size=config.batch_size, seed=config.seed)
    info = _run_info(acts, layer)
    start = time.time()
    stopped: SAETrainingStopped | None = None
    try:
        sae, history = SAETrainer(config, d_in, device=device, info=info).fit(batches, progress=progress)
    except SAETrainingStopped as err:
        if err.sae is None:
            raise
        stopped, sae, history = err, err.sae, err.history
    seconds = time.time() - start
    evaluation = evaluate_on_run(sae, acts, layer, held_inputs, exclude_first_token=config.exclude_first_token,
                                 model=model, loss_texts=loss_texts, device=device)
    meta = {
        **_entry_meta(acts, layer, sae),
        "source": "trained",
        "config": config.as_dict(),
        "exclude_first_token": config.exclude_first_token,
        "evaluation": evaluation.as_dict(),
        "held_out_inputs": int(held_inputs.size),
        "training": {"seconds": seconds, "stopped": history.stopped, "steps": history.steps,
                     "tokens": int(history.tokens[-1]) if history.tokens else 0,
                     "norm_scaling_factor": history.norm_scaling_factor, "resampled": history.resampled,
                     "device": str(pick_device(device))},
    }
    with store.lock(f"sae-{key}"):
        _write_entry(store, key, sae, meta, history.as_arrays())
    entry = open_sae(store, key)
    if stopped is not None:
        raise SAETrainingStopped(f"{stopped}; it is stored as SAE {key}", entry.sae, entry.history)
    return entry


def import_saelens(
    folder: str | os.PathLike,
    acts: Activations,
    layer: str,
    *,
    store: Store | None = None,
    model: LoadedModel | None = None,
    exclude_first_token: bool = True,
    device: str | torch.device | None = None,
) -> StoredSAE:
    """Copy an SAELens folder into the workspace as an SAE of `layer` of a tokens run, evaluated on all its inputs.

    Raises LayerscopeError when the folder is not a readable SAELens SAE or its d_in differs
    from the layer's width.
    """
    store = store or Store()
    check_tokens_run(acts, layer)
    sae = load_saelens(folder)
    width = acts.dim(layer)
    if sae.d_in != width:
        raise LayerscopeError(
            f"the SAE in {str(folder)!r} takes d_in={sae.d_in} but layer {layer!r} of run {acts.key} "
            f"({acts.model_name}) is {width} wide; pick the layer (and model) it was trained on"
        )
    digest = "".join(file_sha256(Path(folder).expanduser() / name) for name in (CFG_FILENAME, WEIGHTS_FILENAME))
    key = make_key({"kind": SAE_KIND, "imported": digest, "run": acts.key, "layer": layer,
                    "exclude_first_token": exclude_first_token, "version": SAE_VERSION})
    if (_sae_dir(store, key) / "meta.json").is_file():
        return open_sae(store, key)
    sae.info = {**sae.info, "imported_from": str(Path(folder).expanduser().resolve()), "run": acts.key}
    evaluation = evaluate_on_run(sae, acts, layer, np.arange(acts.n_inputs), exclude_first_token=exclude_first_token,
                                 model=model, device=device)
    meta = {
        **_entry_meta(acts, layer, sae),
        "source": "imported",
        "imported_from": sae.info["imported_from"],
        "hook_name": sae.info.get("hook_name"),
        "trained_on_model": sae.info.get("model_name"),
        "config": None,
        "exclude_first_token": exclude_first_token,
        "evaluation": evaluation.as_dict(),
        "held_out_inputs": int(acts.n_inputs),
        "training": {},
    }
    with store.lock(f"sae-{key}"):
        _write_entry(store, key, sae, meta, {})
    return open_sae(store, key)
