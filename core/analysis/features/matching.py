"""Which latents two SAEs share (Lan et al. 2024; METRICS.md "SAE feature matching across models").

Each latent's activations over the same inputs are z-scored; the correlation matrix A^T B / n
pairs every latent of B with its most-correlated latent of A. The mean paired correlation is
set against random pairings, then SVCCA and RSA compare the paired decoder directions against
randomly paired ones. Tokens are aligned when both runs tokenised the inputs identically;
otherwise each input's maximum activation is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.analysis.features.blocks import BLOCK_ELEMENTS, encode_rows, input_max
from core.analysis.features.stats import FEATURES_VERSION, FeatureStats
from core.analysis.sae import SparseAutoencoder, check_tokens_run, token_rows
from core.device import pick_device
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.runs import check_same_inputs

if TYPE_CHECKING:
    from core.activations import Activations

N_RANDOM_DIRECTION_DRAWS = 3  # random pairings of decoder directions for the SVCCA / RSA baselines


@dataclass(frozen=True, eq=False)
class FeatureMatching:
    """Latents of SAE B paired with their most-correlated latent of SAE A. Fb = B's latents."""

    sae_a: str
    sae_b: str
    level: str  # "tokens" (same tokenisation) or "inputs" (each input's max activation)
    n_rows: int  # tokens or inputs the correlations are computed on
    partner: np.ndarray  # (Fb,) int64 A latent paired with each B latent; -1 where B's latent never fires
    correlation: np.ndarray  # (Fb,) Pearson r of the pair; NaN where unpaired
    random_correlation: np.ndarray  # (Fb,) r with a random live A latent (one draw), NaN where unpaired
    mean_paired: float  # mean of `correlation` over paired latents
    mean_random: float  # mean over n_random random pairings
    random_std: float  # spread of that mean across the random pairings
    svcca_paired: float  # SVCCA of paired decoder directions (one-to-one pairs)
    svcca_random: float  # the same for random pairs (mean over draws)
    rsa_paired: float
    rsa_random: float
    n_alive_a: int
    n_alive_b: int
    n_pairs: int  # one-to-one pairs with r >= min_correlation used for SVCCA and RSA
    reasons: dict[str, str] = field(default_factory=dict)  # why a number is NaN
    params: dict[str, Any] = field(default_factory=dict)

    def table(self, stats_a: FeatureStats | None = None, stats_b: FeatureStats | None = None):
        """pandas DataFrame of paired latents, best correlated first."""
        import pandas as pd

        rows = np.flatnonzero(self.partner >= 0)
        rows = rows[np.argsort(-self.correlation[rows], kind="stable")]
        frame = pd.DataFrame({"feature_b": rows, "feature_a": self.partner[rows],
                              "correlation": self.correlation[rows]})
        if stats_a is not None:
            frame["density_a"] = stats_a.density[self.partner[rows]]
        if stats_b is not None:
            frame["density_b"] = stats_b.density[rows]
        return frame


def _zscore(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns z-scored (population std); constant columns become 0. Returns (Z, alive mask)."""
    mean = M.mean(0)
    std = M.std(0, unbiased=False)
    alive = std > 0
    Z = torch.where(alive, (M - mean) / torch.where(alive, std, 1.0), 0.0)
    return Z, alive


def _safe_metric(fn: Callable[[np.ndarray, np.ndarray], float], X: np.ndarray, Y: np.ndarray, name: str,
                 reasons: dict[str, str]) -> float:
    """fn(X, Y), or NaN with the reason kept when the metric is undefined on these directions."""
    try:
        return float(fn(X, Y))
    except LayerscopeError as err:
        reasons.setdefault(name, str(err))
        return float("nan")


def _nanmean_or_nan(values: list[float]) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


@torch.no_grad()
def match_features(
    sae_a: SparseAutoencoder,
    acts_a: Activations,
    layer_a: str,
    sae_b: SparseAutoencoder,
    acts_b: Activations,
    layer_b: str,
    *,
    keys: tuple[str, str] = ("A", "B"),
    exclude_first_token: bool = True,
    max_rows: int = 8192,
    n_random: int = 10,
    min_correlation: float = 0.0,
    max_pairs: int = 2000,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> FeatureMatching:
    """Pair B's latents with A's by activation correlation over the same inputs (Lan et al. 2024)."""
    from core.analysis.similarity import rsa, svcca

    for acts, layer, sae, side in ((acts_a, layer_a, sae_a, "A"), (acts_b, layer_b, sae_b, "B")):
        check_tokens_run(acts, layer)
        if acts.dim(layer) != sae.d_in:
            raise LayerscopeError(f"SAE {side} takes d_in={sae.d_in} but layer {layer!r} is {acts.dim(layer)} wide")
    check_same_inputs(acts_a, acts_b, purpose="SAEs whose runs are not on the same inputs cannot be matched, "
                      "as matching compares latents input by input")
    dev = pick_device(device)
    sae_a, sae_b = sae_a.to(dev).eval(), sae_b.to(dev).eval()
    rng = np.random.default_rng(seed)
    same_tokens = np.array_equal(acts_a.token_ids, acts_b.token_ids)  # also False when the shapes differ
    report(progress, 0, 3, "encoding A")
    if same_tokens:
        level = "tokens"
        rows = token_rows(acts_a, exclude_first_token=exclude_first_token)
        if rows.size > max_rows:
            rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
        A = encode_rows(sae_a, acts_a[layer_a], rows, dev)  # (n, Fa)
        report(progress, 1, 3, "encoding B")
        B = encode_rows(sae_b, acts_b[layer_b], rows, dev)  # (n, Fb)
    else:
        level = "inputs"
        A = input_max(sae_a, acts_a, layer_a, exclude_first_token, dev)
        report(progress, 1, 3, "encoding B")
        B = input_max(sae_b, acts_b, layer_b, exclude_first_token, dev)
    n = A.shape[0]
    if n < 3:
        raise LayerscopeError(f"matching needs at least 3 {level}; got {n}")
    Az, alive_a = _zscore(A)
    Bz, alive_b = _zscore(B)
    del A, B
    if not bool(alive_a.any()) or not bool(alive_b.any()):
        raise LayerscopeError("one SAE has no latent that fires on these inputs; nothing to match")
    report(progress, 2, 3, "correlating")
    partner, best = _best_partners(Az, Bz, alive_a, alive_b)
    live_a = torch.nonzero(alive_a).flatten().cpu().numpy()
    live_b = torch.nonzero(alive_b).flatten()
    Fb = Bz.shape[1]
    random_means, first_draw = [], None
    for _ in range(max(1, n_random)):
        draw = torch.from_numpy(rng.choice(live_a, size=live_b.numel())).to(dev)
        r = (Az[:, draw] * Bz[:, live_b]).sum(0) / n
        random_means.append(float(r.mean()))
        if first_draw is None:
            first_draw = torch.full((Fb,), float("nan"), device=dev)
            first_draw[live_b] = r
    partner_np, best_np = partner.cpu().numpy(), best.cpu().numpy().astype(np.float64)

    # one-to-one pairs for the decoder-direction comparison: each A latent keeps its best B latent
    reasons: dict[str, str] = {}
    candidates = np.flatnonzero((partner_np >= 0) & (best_np >= min_correlation))
    candidates = candidates[np.argsort(-best_np[candidates], kind="stable")]
    _, first = np.unique(partner_np[candidates], return_index=True)
    pairs_b = candidates[np.sort(first)]
    if pairs_b.size > max_pairs:
        pairs_b = np.sort(rng.choice(pairs_b, size=max_pairs, replace=False))
    W_a = sae_a.W_dec.detach().cpu().numpy().astype(np.float64)
    W_b = sae_b.W_dec.detach().cpu().numpy().astype(np.float64)
    X, Y = W_a[partner_np[pairs_b]], W_b[pairs_b]
    svcca_paired = _safe_metric(svcca, X, Y, "svcca", reasons)
    rsa_paired = _safe_metric(rsa, X, Y, "rsa", reasons)
    svcca_random, rsa_random = [], []
    live_b_np = live_b.cpu().numpy()
    for _ in range(N_RANDOM_DIRECTION_DRAWS):
        m = min(pairs_b.size, live_a.size, live_b_np.size)
        ra = rng.choice(live_a, size=m, replace=False)
        rb = rng.choice(live_b_np, size=m, replace=False)
        svcca_random.append(_safe_metric(svcca, W_a[ra], W_b[rb], "svcca_random", reasons))
        rsa_random.append(_safe_metric(rsa, W_a[ra], W_b[rb], "rsa_random", reasons))
    report(progress, 3, 3, "done")
    paired = best_np[partner_np >= 0]
    return FeatureMatching(
        sae_a=keys[0], sae_b=keys[1], level=level, n_rows=int(n), partner=partner_np.astype(np.int64),
        correlation=best_np, random_correlation=first_draw.cpu().numpy().astype(np.float64),
        mean_paired=float(paired.mean()) if paired.size else float("nan"),
        mean_random=float(np.mean(random_means)), random_std=float(np.std(random_means)),
        svcca_paired=svcca_paired, svcca_random=_nanmean_or_nan(svcca_random),
        rsa_paired=rsa_paired, rsa_random=_nanmean_or_nan(rsa_random),
        n_alive_a=int(alive_a.sum()), n_alive_b=int(alive_b.sum()), n_pairs=int(pairs_b.size), reasons=reasons,
        params={"exclude_first_token": exclude_first_token, "max_rows": max_rows, "n_random": n_random,
                "min_correlation": min_correlation, "max_pairs": max_pairs, "seed": seed, "version": FEATURES_VERSION},
    )


def _best_partners(Az: torch.Tensor, Bz: torch.Tensor, alive_a: torch.Tensor,
                   alive_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Fb,) the most-correlated live A latent of each B latent (-1 where B's is dead) and that correlation."""
    n, Fb = Bz.shape
    partner = torch.full((Fb,), -1, dtype=torch.long, device=Bz.device)
    best = torch.full((Fb,), float("nan"), device=Bz.device)
    block = int(max(64, min(Fb, BLOCK_ELEMENTS // max(Az.shape[1], 1))))
    dead_a = ~alive_a
    for start in range(0, Fb, block):
        corr = Az.T @ Bz[:, start : start + block] / n  # (Fa, block)
        corr[dead_a] = -math.inf
        value, index = corr.max(0)
        partner[start : start + block] = index
        best[start : start + block] = value
    return torch.where(alive_b, partner, -1), torch.where(alive_b, best, float("nan")).clamp(-1.0, 1.0)
