"""SparseAutoencoder: an SAE module with SAELens' parameter names and shapes.

x_hat = W_dec^T f + b_dec with f = activation(W_enc^T (x - b_dec) + b_enc); the activation
rule (TopK, ReLU, JumpReLU) is the `Architecture` the module holds (``sae.arch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from core.analysis.sae.architectures import Architecture, architecture_class
from core.analysis.sae.scaler import RUNTIME_NORMALIZATIONS, normalise_in, normalise_out
from core.validation import check_choice


class SparseAutoencoder(nn.Module):
    """An SAE with SAELens' parameter names and shapes; `info` carries cfg.json's metadata.

    W_enc (d_in, d_sae), b_enc (d_sae,), W_dec (d_sae, d_in), b_dec (d_in,),
    plus the architecture's own parameters (threshold (d_sae,) for jumprelu SAEs loaded from SAELens).
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
        self.arch: Architecture = architecture_class(architecture)(int(d_sae), k=k)
        self.normalize_activations = check_choice("normalize_activations", normalize_activations,
                                                  RUNTIME_NORMALIZATIONS)
        self.d_in, self.d_sae = int(d_in), int(d_sae)
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.info = dict(info or {})
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        for name, initial in self.arch.extra_parameters().items():
            self.register_parameter(name, nn.Parameter(initial))

    @property
    def architecture(self) -> str:
        """The architecture's registered name ("topk", "standard", "jumprelu")."""
        return self.arch.name

    @property
    def k(self) -> int | None:
        """Latents kept per token (topk), else None."""
        return self.arch.k

    def extra_repr(self) -> str:
        k = f", k={self.k}" if self.k else ""
        return f"{self.architecture}, d_in={self.d_in}, d_sae={self.d_sae}{k}"

    def normalise_in(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(n, d_in) inputs under the SAE's run-time normalisation, and the state that undoes it."""
        return normalise_in(x, self.normalize_activations)

    def normalise_out(self, x: torch.Tensor, state: Any) -> torch.Tensor:
        """Undo the run-time normalisation on a (n, d_in) reconstruction."""
        return normalise_out(x, self.normalize_activations, state)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> (n, d_sae) encoder pre-activations W_enc^T (x - b_dec) + b_enc (x already normalised)."""
        centred = x - self.b_dec if self.apply_b_dec_to_input else x
        return torch.addmm(self.b_enc, centred, self.W_enc)  # bias fused into the matmul

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """(n, d_sae) pre-activations -> sparse latent activations."""
        return self.arch.activate(self, pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) raw activations -> (n, d_sae) latent activations (>= 0)."""
        x, _ = self.normalise_in(x.to(self.W_enc.dtype))
        return self.activate(self.pre_activations(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """(n, d_sae) latents -> (n, d_in) reconstruction (before any run-time de-normalisation)."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> (n, d_in) reconstruction of x."""
        x = x.to(self.W_enc.dtype)
        normed, state = self.normalise_in(x)
        return self.normalise_out(self.decode(self.activate(self.pre_activations(normed))), state)

    @torch.no_grad()
    def fold_scaling_factor(self, scale: float) -> None:
        """Fold an input scale s into the weights: the SAE then takes x where it took s * x."""
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)  # pre-activations, hence a jumprelu threshold, are unchanged
