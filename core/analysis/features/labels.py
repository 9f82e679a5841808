"""How SAE latents relate to a run's label columns, counted in the same streaming pass as the statistics.

A categorical column (at most MAX_CATEGORIES values) counts, per latent and label value, the
tokens where the latent fires; its score is the mutual information between "fires" and the
label, in bits. A numeric column with more values keeps running sums for the Pearson r
between activation and label. Text columns with more values are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from core.activations import Activations

MAX_CATEGORIES = 50  # label columns with more distinct values (and numeric) are treated as numeric


@dataclass(frozen=True, eq=False)
class LabelAssociation:
    """How the latents' firing relates to one label column. F = latents, V = label values."""

    column: str
    kind: str  # "categorical" or "numeric"
    values: tuple[str, ...] = ()  # (V,) label values (categorical)
    tokens_per_value: np.ndarray | None = None  # (V,) tokens of inputs with each value
    fires_per_value: np.ndarray | None = None  # (F, V) tokens with each value where the latent fires
    correlation: np.ndarray | None = None  # (F,) Pearson r of activation with the label (numeric), NaN if undefined

    def score(self) -> np.ndarray:
        """(F,) association: mutual information (bits) between firing and the label, or |r| for numeric labels."""
        if self.kind == "numeric":
            return np.nan_to_num(np.abs(self.correlation), nan=0.0)
        n_v = self.tokens_per_value.astype(np.float64)  # (V,)
        f_v = self.fires_per_value.astype(np.float64)  # (F, V)
        n = n_v.sum()
        fires = f_v.sum(1, keepdims=True)  # (F, 1)
        p_v = n_v / n
        mi = np.zeros(f_v.shape[0])
        for joint, marginal in ((f_v / n, fires / n), ((n_v - f_v) / n, 1.0 - fires / n)):
            with np.errstate(divide="ignore", invalid="ignore"):
                term = joint * np.log2(joint / (marginal * p_v))
            mi += np.nansum(np.where(joint > 0, term, 0.0), axis=1)
        return np.clip(mi, 0.0, None)

    def top_values(self, feature: int, n: int = 3) -> list[dict[str, Any]]:
        """The label values this latent fires on most, by lift: rate on the value / rate overall."""
        if self.kind != "categorical":
            return []
        fires = self.fires_per_value[feature].astype(np.float64)
        tokens = self.tokens_per_value.astype(np.float64)
        total = fires.sum()
        if total == 0:
            return []
        overall = total / tokens.sum()
        rate = np.divide(fires, tokens, out=np.zeros_like(fires), where=tokens > 0)
        order = np.argsort(-rate, kind="stable")[:n]
        return [
            {"value": self.values[v], "rate": float(rate[v]), "base_rate": float(overall),
             "lift": float(rate[v] / overall), "share_of_firing": float(fires[v] / total)}
            for v in order if fires[v] > 0
        ]


def label_codes(acts: Activations, column: str) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """(kind, per-input codes or values, category names) for a label column; kind "skip" leaves it out."""
    values = acts.labels(column)
    numeric = np.issubdtype(np.asarray(values).dtype, np.number) and not np.issubdtype(values.dtype, np.bool_)
    distinct = np.unique(np.asarray(values, dtype=str))
    if numeric and distinct.size > MAX_CATEGORIES:
        return "numeric", np.asarray(values, dtype=np.float64), ()
    if distinct.size > MAX_CATEGORIES:
        return "skip", np.zeros(0), ()
    strings = np.asarray(values, dtype=str)
    codes = np.searchsorted(distinct, strings)
    return "categorical", codes.astype(np.int64), tuple(str(v) for v in distinct)


class LabelTally:
    """Running counts (categorical) or sums (numeric) of one label column over blocks of tokens."""

    def __init__(self, column: str, kind: str, codes: np.ndarray, names: tuple[str, ...], token_inputs: np.ndarray,
                 n_features: int, device: torch.device) -> None:
        self.column, self.kind, self.codes, self.names = column, kind, codes, names
        self.n_features, self.device = n_features, device
        per_token = codes[token_inputs]  # the label of every token read
        if kind == "categorical":
            self.tokens = np.bincount(per_token, minlength=len(names))  # (V,)
            self.fires = torch.zeros(len(names), n_features, dtype=torch.float64, device=device)  # (V, F)
        else:
            ok = np.isfinite(per_token)
            self.n, self.sy, self.syy = int(ok.sum()), float(per_token[ok].sum()), float((per_token[ok] ** 2).sum())
            # running sums of a, a^2 and a * y per latent
            self.sa, self.saa, self.say = (
                torch.zeros(n_features, dtype=torch.float64, device=device) for _ in range(3)
            )

    def update(self, block_inputs: np.ndarray, a: torch.Tensor, fires: torch.Tensor) -> None:
        """Add a block: the input of each token (b,), activations a (b, F) and fires = a > 0."""
        per_input = self.codes[block_inputs]
        if self.kind == "categorical":
            onehot = torch.zeros(len(block_inputs), len(self.names), dtype=torch.float64, device=self.device)
            onehot[torch.arange(len(block_inputs)), torch.from_numpy(per_input).to(self.device)] = 1.0
            self.fires += onehot.T @ fires.double()
            return
        y = torch.from_numpy(per_input).to(self.device)
        ok = torch.isfinite(y)
        a64 = a.double()[ok]
        self.sa += a64.sum(0)
        self.saa += a64.pow(2).sum(0)
        self.say += y[ok] @ a64

    def finish(self) -> LabelAssociation:
        """The association of the tokens added."""
        if self.kind == "categorical":
            return LabelAssociation(self.column, "categorical", self.names, np.asarray(self.tokens, dtype=np.int64),
                                    self.fires.round().long().cpu().numpy().T.copy())
        m = self.n
        cov = self.say - self.sa * self.sy / m
        var_a = self.saa - self.sa.pow(2) / m
        var_y = self.syy - self.sy**2 / m
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (cov / torch.sqrt(var_a * var_y)).cpu().numpy() if var_y > 0 else np.full(self.n_features, np.nan)
        r[~np.isfinite(r)] = np.nan
        return LabelAssociation(self.column, "numeric", correlation=r)


def label_tallies(acts: Activations, token_inputs: np.ndarray, n_features: int,
                  device: torch.device) -> list[LabelTally]:
    """One tally per usable label column of the run; token_inputs: (n,) the input of each token read."""
    tallies = []
    for column in acts.label_columns:
        kind, codes, names = label_codes(acts, column)
        if kind != "skip":
            tallies.append(LabelTally(column, kind, codes, names, token_inputs, n_features, device))
    return tallies
