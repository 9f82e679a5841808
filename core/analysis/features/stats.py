"""Per-latent statistics of an SAE over every token of a run, in one streaming pass.

Per latent: firing density, mean and max activation, the top-k activating tokens, a uniform
sample of its firing tokens (for examples at every activation level), an exact histogram of
its non-zero activations on fixed log-spaced bins, and its association with each label
column (labels.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.analysis.features.blocks import block_size
from core.analysis.features.labels import LabelAssociation, label_tallies
from core.analysis.sae import SparseAutoencoder, check_tokens_run, token_rows
from core.device import pick_device
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.validation import check_choice, check_int

if TYPE_CHECKING:
    from core.activations import Activations

FEATURES_VERSION = 1  # bump when a statistic changes: invalidates stored results
HIST_EDGES = np.logspace(-4, 4, 65)  # activation histogram bins: 8 decades, 8 bins each
SORT_KEYS = ("density", "max_activation", "label_association")


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Per-latent statistics of one SAE over one run's tokens. F = latents, k = top_k, R = samples."""

    sae_key: str
    run_key: str
    layer: str
    n_tokens: int  # tokens seen (first tokens left out when the SAE was trained without them)
    density: np.ndarray  # (F,) fraction of tokens where the latent is active
    max_activation: np.ndarray  # (F,)
    mean_activation: np.ndarray  # (F,) mean over the tokens where it is active (0 when dead)
    top_rows: np.ndarray  # (F, k) int64 token rows of the largest activations, best first; -1 = none
    top_values: np.ndarray  # (F, k) float32
    sample_rows: np.ndarray  # (F, R) int64 uniform sample of the tokens where it fires; -1 = none
    sample_values: np.ndarray  # (F, R) float32
    hist_edges: np.ndarray  # (B + 1,) log-spaced bin edges
    hist_counts: np.ndarray  # (F, B) int64 counts of non-zero activations per bin (outside edges: end bins)
    labels: dict[str, LabelAssociation] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.density.shape[0])

    @property
    def dead(self) -> np.ndarray:
        """(F,) True where the latent never fires."""
        return self.density == 0

    def order(self, by: str = "density", column: str | None = None) -> np.ndarray:
        """(F,) latent ids sorted best first by "density", "max_activation" or "label_association" (needs column)."""
        check_choice("by", by, SORT_KEYS)
        if by == "label_association":
            if column not in self.labels:
                raise LayerscopeError(
                    f"label column {column!r} has no association; choose one of {', '.join(self.labels) or '(none)'}"
                )
            key = self.labels[column].score()
        else:
            key = getattr(self, by)
        return np.argsort(-np.asarray(key, dtype=np.float64), kind="stable")

    def quantile_examples(
        self, feature: int, n_intervals: int = 4, per_interval: int = 2
    ) -> list[tuple[int, float, str]]:
        """(row, activation, interval name) from the sampled firing tokens, spread over activation quantiles."""
        rows, values = self.sample_rows[feature], self.sample_values[feature]
        keep = rows >= 0
        rows, values = rows[keep], values[keep]
        if rows.size == 0:
            return []
        order = np.argsort(values)
        rows, values = rows[order], values[order]
        out = []
        bounds = np.linspace(0, rows.size, n_intervals + 1).astype(int)
        for i in range(n_intervals - 1, -1, -1):
            lo, hi = bounds[i], bounds[i + 1]
            picks = np.unique(np.linspace(lo, hi - 1, per_interval).astype(int)) if hi > lo else []
            name = f"quantile {i * 100 // n_intervals}-{(i + 1) * 100 // n_intervals}%"
            out += [(int(rows[j]), float(values[j]), name) for j in picks]
        return out


@torch.no_grad()
def feature_stats(
    sae: SparseAutoencoder,
    acts: Activations,
    layer: str,
    *,
    sae_key: str = "",
    exclude_first_token: bool = True,
    top_k: int = 20,
    n_samples: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> FeatureStats:
    """Per-latent statistics of `sae` on every token of `layer` in a tokens run, in one streaming pass."""
    check_tokens_run(acts, layer)
    if acts.dim(layer) != sae.d_in:
        raise LayerscopeError(
            f"the SAE takes d_in={sae.d_in} but layer {layer!r} of run {acts.key} is {acts.dim(layer)} wide"
        )
    top_k, n_samples = check_int("top_k", top_k, low=1), check_int("n_samples", n_samples, low=1)
    dev = pick_device(device)
    sae = sae.to(dev).eval()
    F = sae.d_sae
    rows = token_rows(acts, exclude_first_token=exclude_first_token)
    if rows.size == 0:
        raise LayerscopeError(f"run {acts.key} has no tokens to read (first tokens left out)")
    input_of_row = np.repeat(np.arange(acts.n_inputs), acts.lengths)
    values = acts[layer]
    generator = torch.Generator(device=dev).manual_seed(seed)
    n_bins = len(HIST_EDGES) - 1
    inner_edges = torch.tensor(np.log10(HIST_EDGES[1:-1]), dtype=torch.float32, device=dev)

    count = torch.zeros(F, dtype=torch.float64, device=dev)
    total = torch.zeros(F, dtype=torch.float64, device=dev)
    peak = torch.zeros(F, dtype=torch.float32, device=dev)
    top_vals = torch.zeros(top_k, F, device=dev)
    top_rows = torch.full((top_k, F), -1, dtype=torch.long, device=dev)
    keys = torch.full((n_samples, F), math.inf, device=dev)
    smp_vals = torch.zeros(n_samples, F, device=dev)
    smp_rows = torch.full((n_samples, F), -1, dtype=torch.long, device=dev)
    hist = torch.zeros(F * n_bins, dtype=torch.long, device=dev)
    tallies = label_tallies(acts, input_of_row[rows], F, dev)

    block = block_size(F)
    for start in range(0, rows.size, block):
        chunk = rows[start : start + block]
        x = torch.from_numpy(np.asarray(values[chunk], dtype=np.float32)).to(dev)
        a = sae.encode(x)  # (b, F)
        row_ids = torch.from_numpy(chunk).to(dev)[:, None].expand(-1, F)  # (b, F)
        fires = a > 0
        count += fires.sum(0)
        total += a.sum(0, dtype=torch.float64)
        peak = torch.maximum(peak, a.amax(0))
        # running top-k over tokens, per latent
        best = torch.cat([top_vals, a]).topk(top_k, dim=0)
        top_vals = best.values
        top_rows = torch.cat([top_rows, row_ids]).gather(0, best.indices)
        # uniform sample of firing tokens: keep the n_samples smallest random keys (priority sampling)
        batch_keys = torch.where(fires, torch.rand(a.shape, generator=generator, device=dev), math.inf)
        pick = torch.cat([keys, batch_keys]).topk(n_samples, dim=0, largest=False)
        keys = pick.values
        smp_vals = torch.cat([smp_vals, a]).gather(0, pick.indices)
        smp_rows = torch.cat([smp_rows, row_ids]).gather(0, pick.indices)
        # histogram of non-zero activations on log bins
        tok, lat = torch.nonzero(fires, as_tuple=True)
        bins = torch.bucketize(torch.log10(a[tok, lat]), inner_edges)
        hist += torch.bincount(lat * n_bins + bins, minlength=F * n_bins)
        for tally in tallies:
            tally.update(input_of_row[chunk], a, fires)
        done = min(start + block, rows.size)
        report(progress, done, rows.size, f"{done:,} of {rows.size:,} tokens")

    n = rows.size
    count_np = count.cpu().numpy()
    return FeatureStats(
        sae_key=sae_key,
        run_key=acts.key,
        layer=layer,
        n_tokens=int(n),
        density=count_np / n,
        max_activation=peak.cpu().numpy().astype(np.float64),
        mean_activation=np.divide(total.cpu().numpy(), count_np, out=np.zeros(F), where=count_np > 0),
        top_rows=torch.where(top_vals > 0, top_rows, -1).T.cpu().numpy().astype(np.int64),
        top_values=top_vals.T.cpu().numpy().astype(np.float32),
        sample_rows=torch.where(torch.isfinite(keys), smp_rows, -1).T.cpu().numpy().astype(np.int64),
        sample_values=smp_vals.T.cpu().numpy().astype(np.float32),
        hist_edges=HIST_EDGES.copy(),
        hist_counts=hist.reshape(F, n_bins).cpu().numpy(),
        labels={tally.column: tally.finish() for tally in tallies},
        params={"top_k": top_k, "n_samples": n_samples, "seed": int(seed),
                "exclude_first_token": bool(exclude_first_token), "version": FEATURES_VERSION},
    )
