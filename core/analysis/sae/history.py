"""TrainingHistory: an SAE's training curves and how training ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

HISTORY_FIELDS = ("tokens", "loss", "mse", "aux", "l0", "fve", "dead_share", "lr")


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
        """The curves as float64 arrays named history_<field>, as stored beside an SAE."""
        return {f"history_{name}": np.asarray(getattr(self, name), dtype=np.float64) for name in HISTORY_FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, object]) -> TrainingHistory:
        """The history stored as `as_arrays()` plus the entry meta's "training" section."""
        history = cls(**{
            name: np.asarray(arrays[f"history_{name}"]).tolist() for name in HISTORY_FIELDS
            if f"history_{name}" in arrays
        })
        info = meta.get("training") or {}
        history.stopped = info.get("stopped", "")
        history.norm_scaling_factor = float(info.get("norm_scaling_factor", 1.0))
        history.steps = int(info.get("steps", 0))
        history.resampled = int(info.get("resampled", 0))
        return history

    def latest(self) -> dict[str, float]:
        """The last logged value of every curve."""
        return {name: float(getattr(self, name)[-1]) for name in HISTORY_FIELDS}
