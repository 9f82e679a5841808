"""Which latents two SAEs share (Lan et al. 2024; METRICS.md "SAE feature matching across models").

Each latent's activations over the same inputs are z-scored; the correlation matrix A^T B / n
pairs every latent of B with its most-correlated latent of A. The mean paired correlation is
set against random pairings, then SVCCA and RSA compare the paired decoder directions against
randomly paired ones. Tokens are aligned when both runs tokenised the inputs identically;
otherwise each input's maximum activation is used.

Two sets of conventions (``variant``):

* ``"layerscope"`` (default): Pearson r (z-scores with the population std); latents that never
  fire take no part (no partner, left out of the means); random pairings draw a live A latent
  for each live B latent; one-to-one pairs: each A latent keeps its best-correlated B latent
  among those with r >= min_correlation; random decoder pairs: random live latents of each side.
* ``"lan2024"`` (wlg1/univ_feat_geom, run_pipeline/correlation_fns.py ``batched_correlation`` and
  run_expm_fns.py ``run_expm`` with ``oneToOne_bool``): z-scores with the sample std (ddof=1,
  + 1e-8) over n, so r <= (n - 1) / n; a latent that never fires has z = 0, hence r = 0 with
  every latent, and counts as such (a dead A latent can be the best partner, a dead B latent
  enters the mean at 0); one-to-one pairs: each A latent keeps the lowest-numbered B latent
  naming it, then only pairs with r > 0.1 stay; random baselines shuffle the pairs
  (get_rand_fns.py ``shuffle_rand``: B's paired rows permuted against A's). Two departures: a B
  latent that never fires stays unpaired (their argmax pairs it with A latent 0 at r = 0, which
  can take that A latent from a live B latent), and their keyword filter is not applied
  (``run_expm`` undoes it as well: the ``else`` after its loop resets both lists).
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
from core.validation import check_choice

if TYPE_CHECKING:
    from core.activations import Activations

N_RANDOM_DIRECTION_DRAWS = 3  # random pairings of decoder directions for the SVCCA / RSA baselines
MATCHING_VARIANTS = {  # name -> one line for menus and captions
    "layerscope": "Pearson r of live latents; random live partners",
    "lan2024": "Lan et al. 2024: ddof=1, dead latents at r = 0, pairs above r = 0.1, shuffled pairs as baseline",
}
DEFAULT_MATCHING_VARIANT = "layerscope"
LAN_MIN_CORRELATION = 0.1  # run_expm keeps pairs with r > 0.1
LAN_STD_EPS = 1e-8  # normalize_byChunks divides by std + 1e-8


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
    n_pairs: int  # one-to-one pairs used for SVCCA and RSA
    reasons: dict[str, str] = field(default_factory=dict)  # why a number is NaN
    params: dict[str, Any] = field(default_factory=dict)
    mean_pairs: float = float("nan")  # mean r of those one-to-one pairs (Lan et al.'s mean_actv_corr_filt)

    @property
    def variant(self) -> str:
        """The conventions the matching followed ("layerscope" for results stored before there were two)."""
        return str(self.params.get("variant", DEFAULT_MATCHING_VARIANT))

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


def _zscore(M: torch.Tensor, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns z-scored (layerscope: population std; lan2024: sample std + 1e-8); constant columns become 0.

    Returns (Z, alive mask). Z^T Z' / n is then Pearson r (layerscope) or Lan et al.'s r.
    """
    mean = M.mean(0)
    if variant == "lan2024":
        std = M.std(0, unbiased=True)
        scale = std + LAN_STD_EPS
    else:
        std = M.std(0, unbiased=False)
        scale = std
    alive = std > 0
    Z = torch.where(alive, (M - mean) / torch.where(alive, scale, 1.0), 0.0)
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
    variant: str = DEFAULT_MATCHING_VARIANT,
    exclude_first_token: bool = True,
    max_rows: int = 8192,
    n_random: int = 10,
    min_correlation: float = 0.0,
    max_pairs: int = 2000,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> FeatureMatching:
    """Pair B's latents with A's by activation correlation over the same inputs (Lan et al. 2024).

    variant: "layerscope" or "lan2024" (the module docstring defines both). min_correlation is a
    floor on the r of the one-to-one pairs in either variant (lan2024 also needs r > 0.1).
    """
    from core.analysis.similarity import rsa, svcca

    variant = check_choice("variant", variant, tuple(MATCHING_VARIANTS))
    lan = variant == "lan2024"
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
    Az, alive_a = _zscore(A, variant)
    Bz, alive_b = _zscore(B, variant)
    del A, B
    if not bool(alive_a.any()) or not bool(alive_b.any()):
        raise LayerscopeError("one SAE has no latent that fires on these inputs; nothing to match")
    report(progress, 2, 3, "correlating")
    partner, best = _best_partners(Az, Bz, alive_a, alive_b, dead_a_count=lan)
    partner_np, best_np = partner.cpu().numpy(), best.cpu().numpy().astype(np.float64)
    live_a = torch.nonzero(alive_a).flatten().cpu().numpy()
    live_b = np.flatnonzero(partner_np >= 0)
    if lan:
        best_np[partner_np < 0] = 0.0  # a latent that never fires correlates with nothing: r = 0, and counts
    random_means, first_draw = _random_correlations(Az, Bz, partner_np, live_a, live_b, lan, n_random, rng)

    # one-to-one pairs for the decoder-direction comparison
    if lan:  # each A latent keeps the first B latent naming it, then pairs above r = 0.1
        _, first = np.unique(partner_np[live_b], return_index=True)
        pairs_b = live_b[np.sort(first)]
        pairs_b = pairs_b[(best_np[pairs_b] > LAN_MIN_CORRELATION) & (best_np[pairs_b] >= min_correlation)]
    else:  # each A latent keeps its best-correlated B latent
        candidates = live_b[best_np[live_b] >= min_correlation]
        candidates = candidates[np.argsort(-best_np[candidates], kind="stable")]
        _, first = np.unique(partner_np[candidates], return_index=True)
        pairs_b = candidates[np.sort(first)]
    if pairs_b.size > max_pairs:
        pairs_b = np.sort(rng.choice(pairs_b, size=max_pairs, replace=False))
    reasons: dict[str, str] = {}
    W_a = sae_a.W_dec.detach().cpu().numpy().astype(np.float64)
    W_b = sae_b.W_dec.detach().cpu().numpy().astype(np.float64)
    X, Y = W_a[partner_np[pairs_b]], W_b[pairs_b]
    svcca_paired = _safe_metric(svcca, X, Y, "svcca", reasons)
    rsa_paired = _safe_metric(rsa, X, Y, "rsa", reasons)
    svcca_random, rsa_random = [], []
    for _ in range(N_RANDOM_DIRECTION_DRAWS):
        if lan:  # shuffle_rand: B's paired rows permuted against A's
            Xr, Yr = X, Y[rng.permutation(len(Y))]
        else:
            m = min(pairs_b.size, live_a.size, live_b.size)
            Xr, Yr = W_a[rng.choice(live_a, size=m, replace=False)], W_b[rng.choice(live_b, size=m, replace=False)]
        svcca_random.append(_safe_metric(svcca, Xr, Yr, "svcca_random", reasons))
        rsa_random.append(_safe_metric(rsa, Xr, Yr, "rsa_random", reasons))
    report(progress, 3, 3, "done")
    counted = best_np if lan else best_np[live_b]  # lan2024 averages over every latent of B, dead ones at 0
    return FeatureMatching(
        sae_a=keys[0], sae_b=keys[1], level=level, n_rows=int(n), partner=partner_np.astype(np.int64),
        correlation=best_np, random_correlation=first_draw,
        mean_paired=float(counted.mean()) if counted.size else float("nan"),
        mean_random=float(np.mean(random_means)), random_std=float(np.std(random_means)),
        svcca_paired=svcca_paired, svcca_random=_nanmean_or_nan(svcca_random),
        rsa_paired=rsa_paired, rsa_random=_nanmean_or_nan(rsa_random),
        n_alive_a=int(alive_a.sum()), n_alive_b=int(alive_b.sum()), n_pairs=int(pairs_b.size), reasons=reasons,
        params={"variant": variant, "exclude_first_token": exclude_first_token, "max_rows": max_rows,
                "n_random": n_random, "min_correlation": min_correlation, "max_pairs": max_pairs, "seed": seed,
                "version": FEATURES_VERSION},
        mean_pairs=float(best_np[pairs_b].mean()) if pairs_b.size else float("nan"),
    )


def _random_correlations(Az: torch.Tensor, Bz: torch.Tensor, partner: np.ndarray, live_a: np.ndarray,
                         live_b: np.ndarray, lan: bool, n_random: int,
                         rng: np.random.Generator) -> tuple[list[float], np.ndarray]:
    """Mean r of each random pairing and the (Fb,) r of the first one.

    layerscope: each live B latent with a random live A latent, averaged over live B latents.
    lan2024: the pairs shuffled (each live B latent with another one's partner), averaged over
    every B latent with the dead ones at 0, as the paired mean is.
    """
    n, Fb = Bz.shape
    cols_b = torch.from_numpy(live_b).to(Bz.device)
    means, first = [], np.full(Fb, 0.0 if lan else np.nan)
    for _ in range(max(1, n_random)):
        draw = partner[live_b][rng.permutation(live_b.size)] if lan else rng.choice(live_a, size=live_b.size)
        r = ((Az[:, torch.from_numpy(draw).to(Az.device)] * Bz[:, cols_b]).sum(0) / n).cpu().numpy()
        means.append(float(r.sum() / Fb) if lan else float(r.mean()))
        if len(means) == 1:
            first[live_b] = r
    return means, first.astype(np.float64)


def _best_partners(Az: torch.Tensor, Bz: torch.Tensor, alive_a: torch.Tensor, alive_b: torch.Tensor, *,
                   dead_a_count: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(Fb,) the most-correlated A latent of each B latent (-1 where B's is dead) and that correlation.

    Dead A latents are left out, or with `dead_a_count` take part at r = 0 (ties go to the lowest index).
    """
    n, Fb = Bz.shape
    partner = torch.full((Fb,), -1, dtype=torch.long, device=Bz.device)
    best = torch.full((Fb,), float("nan"), device=Bz.device)
    block = int(max(64, min(Fb, BLOCK_ELEMENTS // max(Az.shape[1], 1))))
    dead_a = ~alive_a
    for start in range(0, Fb, block):
        corr = Az.T @ Bz[:, start : start + block] / n  # (Fa, block)
        if dead_a_count:
            corr[dead_a] = 0.0
        else:
            corr[dead_a] = -math.inf
        value, index = corr.max(0)
        partner[start : start + block] = index
        best[start : start + block] = value
    return torch.where(alive_b, partner, -1), torch.where(alive_b, best, float("nan")).clamp(-1.0, 1.0)
