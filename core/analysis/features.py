"""What each SAE latent responds to, and which latents two SAEs share.

`feature_stats` makes one streaming pass over a tokens run and keeps, per latent:
firing density, mean and max activation, the top-k activating tokens, a uniform sample of
its firing tokens (for examples at every activation level), an exact histogram of its
non-zero activations on fixed log-spaced bins, and its association with each label
column (categorical, at most 50 values: firing counts per label value, scored by the mutual
information between "fires" and the label, in bits; numeric with more values: Pearson r
between activation and label; text columns with more than 50 values are left out).
`feature_examples` turns token rows into context windows with per-token activations.
`logit_effects` reads each decoder direction through a causal LM's final-norm gain and
unembedding: the tokens a latent promotes and suppresses.

`match_features` pairs the latents of two SAEs over the same inputs (Lan et al. 2024,
METRICS.md "SAE feature matching across models"): z-score each latent's activations,
correlation matrix A^T B / n, each latent of B paired with its most-correlated latent of A;
mean paired correlation against random pairings, then SVCCA and RSA between the paired
decoder directions against randomly paired ones. Tokens are aligned when both runs
tokenised the inputs identically; otherwise each input's maximum activation is used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.analysis.sae import SparseAutoencoder, StoredSAE, token_rows
from core.device import pick_device
from core.errors import LayerscopeError

if TYPE_CHECKING:
    from core.activations import Activations
    from core.models import LoadedModel
    from core.store import Store

logger = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when a statistic changes: invalidates stored results
HIST_EDGES = np.logspace(-4, 4, 65)  # activation histogram bins: 8 decades, 8 bins each
MAX_CATEGORIES = 50  # label columns with more distinct values (and numeric) are treated as numeric
SORT_KEYS = ("density", "max_activation", "label_association")
_BLOCK_ELEMENTS = 2**24  # (tokens x latents) floats encoded at once

Progress = Callable[[int, int, str], None]


# ----- per-latent statistics ---------------------------------------------------------------
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
        return self.density == 0

    def order(self, by: str = "density", column: str | None = None) -> np.ndarray:
        """(F,) latent ids sorted best first by "density", "max_activation" or "label_association" (needs column)."""
        if by == "density":
            key = self.density
        elif by == "max_activation":
            key = self.max_activation
        elif by == "label_association":
            if column not in self.labels:
                raise LayerscopeError(
                    f"label column {column!r} has no association; choose one of {', '.join(self.labels) or '(none)'}"
                )
            key = self.labels[column].score()
        else:
            raise LayerscopeError(f"sort by={by!r} is not known; choose one of {', '.join(SORT_KEYS)}")
        return np.argsort(-np.asarray(key, dtype=np.float64), kind="stable")

    def quantile_examples(self, feature: int, n_intervals: int = 4, per_interval: int = 2) -> list[tuple[int, float, str]]:
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


def _label_codes(acts: Activations, column: str) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """(kind, per-input codes or values, category names) for a label column."""
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
    from core.analysis.sae import check_tokens_run

    check_tokens_run(acts, layer)
    if acts.dim(layer) != sae.d_in:
        raise LayerscopeError(f"the SAE takes d_in={sae.d_in} but layer {layer!r} of run {acts.key} is {acts.dim(layer)} wide")
    for name, value in (("top_k", top_k), ("n_samples", n_samples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise LayerscopeError(f"{name}={value!r} must be a positive integer")
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

    labels: dict[str, dict[str, Any]] = {}
    for column in acts.label_columns:
        kind, codes, names = _label_codes(acts, column)
        if kind == "categorical":
            per_row = codes[input_of_row[rows]]
            labels[column] = {"kind": kind, "codes": codes, "names": names,
                              "tokens": np.bincount(per_row, minlength=len(names)),
                              "fires": torch.zeros(len(names), F, dtype=torch.float64, device=dev)}
        elif kind == "numeric":
            y = codes[input_of_row[rows]]
            ok = np.isfinite(y)
            labels[column] = {"kind": kind, "codes": codes, "n": int(ok.sum()), "sy": float(y[ok].sum()),
                              "syy": float((y[ok] ** 2).sum()),
                              "sa": torch.zeros(F, dtype=torch.float64, device=dev),
                              "saa": torch.zeros(F, dtype=torch.float64, device=dev),
                              "say": torch.zeros(F, dtype=torch.float64, device=dev)}

    block = int(max(256, min(8192, _BLOCK_ELEMENTS // max(F, 1))))
    for start in range(0, rows.size, block):
        chunk = rows[start : start + block]
        x = torch.from_numpy(np.asarray(values[chunk], dtype=np.float32)).to(dev)
        a = sae.encode(x)  # (b, F)
        row_ids = torch.from_numpy(chunk).to(dev)
        fires = a > 0
        count += fires.sum(0)
        total += a.sum(0, dtype=torch.float64)
        peak = torch.maximum(peak, a.amax(0))
        # running top-k over tokens, per latent
        merged = torch.cat([top_vals, a])
        best = merged.topk(top_k, dim=0)
        top_vals = best.values
        top_rows = torch.cat([top_rows, row_ids[:, None].expand(-1, F)]).gather(0, best.indices)
        # uniform sample of firing tokens: keep the n_samples smallest random keys (priority sampling)
        batch_keys = torch.where(fires, torch.rand(a.shape, generator=generator, device=dev), math.inf)
        merged_keys = torch.cat([keys, batch_keys])
        pick = merged_keys.topk(n_samples, dim=0, largest=False)
        keys = pick.values
        smp_vals = torch.cat([smp_vals, a]).gather(0, pick.indices)
        smp_rows = torch.cat([smp_rows, row_ids[:, None].expand(-1, F)]).gather(0, pick.indices)
        # histogram of non-zero activations on log bins
        tok, lat = torch.nonzero(fires, as_tuple=True)
        bins = torch.bucketize(torch.log10(a[tok, lat]), inner_edges)
        hist += torch.bincount(lat * n_bins + bins, minlength=F * n_bins)
        for column, state in labels.items():
            per_input = state["codes"][input_of_row[chunk]]
            if state["kind"] == "categorical":
                onehot = torch.zeros(len(chunk), len(state["names"]), dtype=torch.float64, device=dev)
                onehot[torch.arange(len(chunk)), torch.from_numpy(per_input).to(dev)] = 1.0
                state["fires"] += onehot.T @ fires.double()
            else:
                y = torch.from_numpy(per_input).to(dev)
                ok = torch.isfinite(y)
                a64 = a.double()[ok]
                state["sa"] += a64.sum(0)
                state["saa"] += a64.pow(2).sum(0)
                state["say"] += y[ok] @ a64
        if progress is not None:
            progress(min(start + block, rows.size), rows.size, f"{min(start + block, rows.size):,} of {rows.size:,} tokens")

    n = rows.size
    top_rows = torch.where(top_vals > 0, top_rows, -1)
    smp_rows = torch.where(torch.isfinite(keys), smp_rows, -1)
    associations = {}
    for column, state in labels.items():
        if state["kind"] == "categorical":
            associations[column] = LabelAssociation(
                column, "categorical", state["names"], np.asarray(state["tokens"], dtype=np.int64),
                state["fires"].round().long().cpu().numpy().T.copy(),
            )
        else:
            m = state["n"]
            cov = state["say"] - state["sa"] * state["sy"] / m
            var_a = state["saa"] - state["sa"].pow(2) / m
            var_y = state["syy"] - state["sy"] ** 2 / m
            with np.errstate(invalid="ignore", divide="ignore"):
                r = (cov / torch.sqrt(var_a * var_y)).cpu().numpy() if var_y > 0 else np.full(F, np.nan)
            r[~np.isfinite(r)] = np.nan
            associations[column] = LabelAssociation(column, "numeric", correlation=r)
    count_np = count.cpu().numpy()
    return FeatureStats(
        sae_key=sae_key,
        run_key=acts.key,
        layer=layer,
        n_tokens=int(n),
        density=count_np / n,
        max_activation=peak.cpu().numpy().astype(np.float64),
        mean_activation=np.divide(total.cpu().numpy(), count_np, out=np.zeros(F), where=count_np > 0),
        top_rows=top_rows.T.cpu().numpy().astype(np.int64),
        top_values=top_vals.T.cpu().numpy().astype(np.float32),
        sample_rows=smp_rows.T.cpu().numpy().astype(np.int64),
        sample_values=smp_vals.T.cpu().numpy().astype(np.float32),
        hist_edges=HIST_EDGES.copy(),
        hist_counts=hist.reshape(F, n_bins).cpu().numpy(),
        labels=associations,
        params={"top_k": int(top_k), "n_samples": int(n_samples), "seed": int(seed),
                "exclude_first_token": bool(exclude_first_token), "version": FEATURES_VERSION},
    )


def _stats_to_store(stats: FeatureStats) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {name: getattr(stats, name) for name in (
        "density", "max_activation", "mean_activation", "top_rows", "top_values", "sample_rows", "sample_values",
        "hist_edges", "hist_counts")}
    labels = {}
    for i, (column, assoc) in enumerate(stats.labels.items()):
        labels[column] = {"kind": assoc.kind, "values": list(assoc.values), "index": i}
        if assoc.kind == "categorical":
            arrays[f"label{i}_tokens"] = assoc.tokens_per_value
            arrays[f"label{i}_fires"] = assoc.fires_per_value
        else:
            arrays[f"label{i}_correlation"] = assoc.correlation
    meta = {"sae_key": stats.sae_key, "run_key": stats.run_key, "layer": stats.layer, "n_tokens": stats.n_tokens,
            "labels": labels, "stats_params": stats.params}
    return arrays, meta


def _stats_from_store(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> FeatureStats:
    labels = {}
    for column, info in meta.get("labels", {}).items():
        i = info["index"]
        if info["kind"] == "categorical":
            labels[column] = LabelAssociation(column, "categorical", tuple(info["values"]),
                                              np.asarray(arrays[f"label{i}_tokens"]),
                                              np.asarray(arrays[f"label{i}_fires"]))
        else:
            labels[column] = LabelAssociation(column, "numeric", correlation=np.asarray(arrays[f"label{i}_correlation"]))
    return FeatureStats(
        sae_key=meta["sae_key"], run_key=meta["run_key"], layer=meta["layer"], n_tokens=int(meta["n_tokens"]),
        **{name: np.asarray(arrays[name]) for name in (
            "density", "max_activation", "mean_activation", "top_rows", "top_values", "sample_rows", "sample_values",
            "hist_edges", "hist_counts")},
        labels=labels, params=dict(meta.get("stats_params", {})),
    )


def feature_stats_params(stored: StoredSAE, *, top_k: int = 20, n_samples: int = 64, seed: int = 0) -> dict[str, Any]:
    return {"sae": stored.key, "run": stored.run_key, "layer": stored.layer, "top_k": top_k, "n_samples": n_samples,
            "seed": seed, "exclude_first_token": stored.exclude_first_token, "version": FEATURES_VERSION}


def stored_feature_stats(stored: StoredSAE, store: Store, **options: Any) -> FeatureStats | None:
    """The stored statistics of `stored`, or None when they have not been computed yet."""
    hit = store.load_result("sae_features", feature_stats_params(stored, **options))
    return None if hit is None else _stats_from_store(*hit)


def feature_stats_cached(
    stored: StoredSAE,
    acts: Activations,
    store: Store,
    *,
    top_k: int = 20,
    n_samples: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> FeatureStats:
    """feature_stats of a stored SAE on its own run, through the store (instant the second time)."""
    if acts.key != stored.run_key:
        raise LayerscopeError(f"SAE {stored.key} belongs to run {stored.run_key}, not {acts.key}")

    def compute():
        return _stats_to_store(feature_stats(
            stored.sae, acts, stored.layer, sae_key=stored.key, exclude_first_token=stored.exclude_first_token,
            top_k=top_k, n_samples=n_samples, seed=seed, device=device, progress=progress))

    arrays, meta = store.cached_result("sae_features", feature_stats_params(
        stored, top_k=top_k, n_samples=n_samples, seed=seed), compute)
    return _stats_from_store(arrays, meta)


# ----- examples in context -------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureExample:
    """One token where a latent fires, with the window of tokens around it."""

    row: int  # token row in the run
    input_index: int
    activation: float  # the latent's activation at `row`
    tokens: tuple[str, ...]  # the window's tokens, readable (word-start marks turned into spaces)
    activations: tuple[float, ...]  # the latent's activation on each token of the window
    focus: int  # position of `row` in the window
    text: str  # the whole input
    labels: dict[str, Any] = field(default_factory=dict)


_MARKS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}


def readable_tokens(tokens: Sequence[str]) -> list[str]:
    """Token strings as text: BPE marks (Ġ, ▁, Ċ) become spaces and newlines; WordPiece words get a leading space."""
    bpe = any(t[:1] in ("Ġ", "▁") for t in tokens)
    out = []
    for i, token in enumerate(tokens):
        if bpe:
            for mark, text in _MARKS.items():
                token = token.replace(mark, text)
        elif token.startswith("##"):
            token = token[2:]
        elif i > 0:
            token = " " + token
        out.append(token)
    return out


@torch.no_grad()
def feature_examples(
    sae: SparseAutoencoder,
    acts: Activations,
    layer: str,
    feature: int,
    rows: Sequence[int],
    *,
    window: int = 8,
    exclude_first_token: bool = True,
    device: str | torch.device | None = None,
) -> list[FeatureExample]:
    """Context windows (up to `window` tokens each side, within the input) around token `rows` for one latent."""
    if not 0 <= int(feature) < sae.d_sae:
        raise LayerscopeError(f"feature={feature!r} must be between 0 and {sae.d_sae - 1}")
    rows = [int(r) for r in rows if int(r) >= 0]
    if not rows:
        return []
    offsets = acts.offsets
    inputs = np.searchsorted(offsets, rows, side="right") - 1
    spans = [(max(int(offsets[i]), r - window), min(int(offsets[i + 1]), r + window + 1)) for r, i in zip(rows, inputs)]
    needed = np.unique(np.concatenate([np.arange(a, b) for a, b in spans]))
    dev = pick_device(device)
    sae = sae.to(dev).eval()
    x = torch.from_numpy(np.asarray(acts[layer][needed], dtype=np.float32)).to(dev)
    column = sae.encode(x)[:, int(feature)].cpu().numpy()
    if exclude_first_token:
        column[np.isin(needed, offsets[:-1])] = 0.0  # the SAE never saw first tokens
    value_of = dict(zip(needed.tolist(), column.tolist()))
    all_tokens = acts.tokens
    texts = acts.texts
    table = acts.table
    out = []
    for r, i, (a, b) in zip(rows, inputs, spans):
        tokens = readable_tokens(all_tokens[int(offsets[i]) : int(offsets[i + 1])])[a - int(offsets[i]) : b - int(offsets[i])]
        out.append(FeatureExample(
            row=r, input_index=int(i), activation=float(value_of[r]), tokens=tuple(tokens),
            activations=tuple(float(value_of[j]) for j in range(a, b)), focus=r - a, text=texts[int(i)],
            labels={c: _plain(table[c].iloc[int(i)]) for c in acts.label_columns},
        ))
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ----- logit effects ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LogitEffects:
    """Tokens each latent's decoder direction promotes / suppresses through the unembedding. (F, k) arrays."""

    promoted_ids: np.ndarray
    promoted_values: np.ndarray
    suppressed_ids: np.ndarray  # most negative first
    suppressed_values: np.ndarray
    vocab_ids: np.ndarray  # (U,) ids that appear above
    vocab_strings: np.ndarray  # (U,) their decoded strings

    def tokens(self, ids: Sequence[int]) -> list[str]:
        index = np.searchsorted(self.vocab_ids, np.asarray(ids))
        return [str(s) for s in self.vocab_strings[index]]

    def for_feature(self, feature: int) -> dict[str, list[tuple[str, float]]]:
        return {
            "promoted": list(zip(self.tokens(self.promoted_ids[feature]), self.promoted_values[feature].tolist())),
            "suppressed": list(zip(self.tokens(self.suppressed_ids[feature]), self.suppressed_values[feature].tolist())),
        }


@torch.no_grad()
def logit_effects(sae: SparseAutoencoder, model: LoadedModel, *, top_k: int = 10, block: int = 256) -> LogitEffects:
    """W_dec (scaled by the final norm's gain) @ W_U^T per latent: its top promoted and suppressed tokens.

    The final norm's centring and rescaling depend on the whole residual, so only its
    elementwise gain is applied (the usual "logit effect" of a direction).
    """
    from core.analysis.lens import _decode_each, find_final_norm, find_unembedding

    if not model.is_causal_lm or model.tokenizer is None:
        raise LayerscopeError(f"model {model.name!r} is not a causal LM; logit effects need an unembedding (e.g. smollm2)")
    _, norm = find_final_norm(model.module)
    _, head = find_unembedding(model.module)
    W_U = head.weight  # (V, d)
    if W_U.shape[1] != sae.d_in:
        raise LayerscopeError(f"the unembedding of {model.name!r} takes width {W_U.shape[1]}, the SAE d_in={sae.d_in}")
    gain = getattr(norm, "weight", None)
    W_dec = sae.W_dec.detach().to(W_U.device, W_U.dtype)
    if isinstance(gain, torch.Tensor) and gain.shape == (sae.d_in,):
        W_dec = W_dec * gain
    k = int(min(top_k, W_U.shape[0]))
    parts = {"pi": [], "pv": [], "si": [], "sv": []}
    for start in range(0, sae.d_sae, block):
        logits = (W_dec[start : start + block] @ W_U.T).float()  # (block, V)
        up, down = logits.topk(k, dim=1), logits.topk(k, dim=1, largest=False)
        parts["pi"].append(up.indices.cpu()), parts["pv"].append(up.values.cpu())
        parts["si"].append(down.indices.cpu()), parts["sv"].append(down.values.cpu())
    joined = {name: torch.cat(chunks).numpy() for name, chunks in parts.items()}
    vocab = np.unique(np.concatenate([joined["pi"].ravel(), joined["si"].ravel()]))
    return LogitEffects(
        promoted_ids=joined["pi"].astype(np.int64), promoted_values=joined["pv"].astype(np.float32),
        suppressed_ids=joined["si"].astype(np.int64), suppressed_values=joined["sv"].astype(np.float32),
        vocab_ids=vocab.astype(np.int64), vocab_strings=np.array(_decode_each(model.tokenizer, vocab.tolist()), dtype=str),
    )


def logit_effects_cached(stored: StoredSAE, model: LoadedModel, store: Store, *, top_k: int = 10) -> LogitEffects:
    """logit_effects through the store, keyed by the SAE and the model's weights."""
    if model.weights_hash != stored.meta.get("model_weights"):
        raise LayerscopeError(f"model {model.name!r} is not the model SAE {stored.key} was trained on ({stored.meta.get('model')})")
    params = {"sae": stored.key, "model": model.identity, "top_k": top_k, "version": FEATURES_VERSION}

    def compute():
        effects = logit_effects(stored.sae, model, top_k=top_k)
        return {name: getattr(effects, name) for name in (
            "promoted_ids", "promoted_values", "suppressed_ids", "suppressed_values", "vocab_ids", "vocab_strings")}, {}

    arrays, _ = store.cached_result("sae_logit_effects", params, compute)
    return LogitEffects(**{name: np.asarray(value) for name, value in arrays.items()})


# ----- a map of the decoder directions -------------------------------------------------------------
def decoder_map(stored: StoredSAE, store: Store, *, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(F, 2) map of the latents' decoder directions (cosine geometry), PCA or UMAP, through the store."""
    from core.analysis.projection import project

    params = {"sae": stored.key, "method": method, "seed": seed, "version": FEATURES_VERSION}

    def compute():
        W = stored.sae.W_dec.detach().cpu().numpy().astype(np.float64)
        return {"coords": project(W, method, seed=seed, metric="cosine")}, {}

    arrays, _ = store.cached_result("sae_feature_map", params, compute)
    return np.asarray(arrays["coords"])


# ----- matching latents across two SAEs ---------------------------------------------------------------
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


def _encode_rows(sae: SparseAutoencoder, values: np.ndarray, rows: np.ndarray, dev: torch.device) -> torch.Tensor:
    out = []
    block = int(max(256, min(8192, _BLOCK_ELEMENTS // sae.d_sae)))
    for start in range(0, rows.size, block):
        x = torch.from_numpy(np.asarray(values[rows[start : start + block]], dtype=np.float32)).to(dev)
        out.append(sae.encode(x))
    return torch.cat(out)


def _input_max(sae: SparseAutoencoder, acts: Activations, layer: str, exclude_first_token: bool,
               dev: torch.device) -> torch.Tensor:
    """(n_inputs, F) each input's maximum activation of each latent."""
    rows = token_rows(acts, exclude_first_token=exclude_first_token)
    owner = torch.from_numpy(np.searchsorted(acts.offsets, rows, side="right") - 1).to(dev)
    result = torch.zeros(acts.n_inputs, sae.d_sae, device=dev)
    block = int(max(256, min(8192, _BLOCK_ELEMENTS // sae.d_sae)))
    for start in range(0, rows.size, block):
        x = torch.from_numpy(np.asarray(acts[layer][rows[start : start + block]], dtype=np.float32)).to(dev)
        a = sae.encode(x)
        index = owner[start : start + block, None].expand(-1, sae.d_sae)
        result.scatter_reduce_(0, index, a, reduce="amax")
    return result


def _zscore(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns z-scored (population std); constant columns become 0. Returns (Z, alive mask)."""
    mean = M.mean(0)
    std = M.std(0, unbiased=False)
    alive = std > 0
    Z = torch.where(alive, (M - mean) / torch.where(alive, std, 1.0), 0.0)
    return Z, alive


def _safe_metric(fn, X: np.ndarray, Y: np.ndarray, name: str, reasons: dict[str, str]) -> float:
    try:
        return float(fn(X, Y))
    except LayerscopeError as err:
        reasons.setdefault(name, str(err))
        return float("nan")


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
    from core.analysis.sae import check_tokens_run
    from core.analysis.similarity import rsa, svcca

    for acts, layer, sae, side in ((acts_a, layer_a, sae_a, "A"), (acts_b, layer_b, sae_b, "B")):
        check_tokens_run(acts, layer)
        if acts.dim(layer) != sae.d_in:
            raise LayerscopeError(f"SAE {side} takes d_in={sae.d_in} but layer {layer!r} is {acts.dim(layer)} wide")
    fp_a, fp_b = acts_a.meta["dataset"].get("fingerprint"), acts_b.meta["dataset"].get("fingerprint")
    if fp_a != fp_b or acts_a.n_inputs != acts_b.n_inputs:
        raise LayerscopeError(
            f"SAE A's run ({acts_a.model_name} on {acts_a.dataset_name}) and SAE B's run ({acts_b.model_name} on "
            f"{acts_b.dataset_name}) are not on the same inputs; matching needs both models run on the same dataset"
        )
    dev = pick_device(device)
    sae_a, sae_b = sae_a.to(dev).eval(), sae_b.to(dev).eval()
    rng = np.random.default_rng(seed)
    same_tokens = acts_a.token_ids.shape == acts_b.token_ids.shape and np.array_equal(acts_a.token_ids, acts_b.token_ids)
    if progress:
        progress(0, 3, "encoding A")
    if same_tokens:
        level = "tokens"
        rows = token_rows(acts_a, exclude_first_token=exclude_first_token)
        if rows.size > max_rows:
            rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
        A = _encode_rows(sae_a, acts_a[layer_a], rows, dev)
        if progress:
            progress(1, 3, "encoding B")
        B = _encode_rows(sae_b, acts_b[layer_b], rows, dev)
    else:
        level = "inputs"
        A = _input_max(sae_a, acts_a, layer_a, exclude_first_token, dev)
        if progress:
            progress(1, 3, "encoding B")
        B = _input_max(sae_b, acts_b, layer_b, exclude_first_token, dev)
    n = A.shape[0]
    if n < 3:
        raise LayerscopeError(f"matching needs at least 3 {level}; got {n}")
    Az, alive_a = _zscore(A)
    Bz, alive_b = _zscore(B)
    del A, B
    if not bool(alive_a.any()) or not bool(alive_b.any()):
        raise LayerscopeError("one SAE has no latent that fires on these inputs; nothing to match")
    if progress:
        progress(2, 3, "correlating")
    Fb = Bz.shape[1]
    partner = torch.full((Fb,), -1, dtype=torch.long, device=dev)
    best = torch.full((Fb,), float("nan"), device=dev)
    block = int(max(64, min(Fb, _BLOCK_ELEMENTS // max(Az.shape[1], 1))))
    dead_a = ~alive_a
    for start in range(0, Fb, block):
        corr = Az.T @ Bz[:, start : start + block] / n  # (Fa, block)
        corr[dead_a] = -math.inf
        value, index = corr.max(0)
        partner[start : start + block] = index
        best[start : start + block] = value
    partner = torch.where(alive_b, partner, -1)
    best = torch.where(alive_b, best, float("nan")).clamp(-1.0, 1.0)
    live_a = torch.nonzero(alive_a).flatten().cpu().numpy()
    live_b = torch.nonzero(alive_b).flatten()
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
    for _ in range(3):
        m = min(pairs_b.size, live_a.size, live_b_np.size)
        ra = rng.choice(live_a, size=m, replace=False)
        rb = rng.choice(live_b_np, size=m, replace=False)
        svcca_random.append(_safe_metric(svcca, W_a[ra], W_b[rb], "svcca_random", reasons))
        rsa_random.append(_safe_metric(rsa, W_a[ra], W_b[rb], "rsa_random", reasons))
    if progress:
        progress(3, 3, "done")
    paired = best_np[partner_np >= 0]
    return FeatureMatching(
        sae_a=keys[0], sae_b=keys[1], level=level, n_rows=int(n), partner=partner_np.astype(np.int64),
        correlation=best_np, random_correlation=first_draw.cpu().numpy().astype(np.float64),
        mean_paired=float(paired.mean()) if paired.size else float("nan"),
        mean_random=float(np.mean(random_means)), random_std=float(np.std(random_means)),
        svcca_paired=svcca_paired, svcca_random=float(np.nanmean(svcca_random)) if np.isfinite(svcca_random).any() else float("nan"),
        rsa_paired=rsa_paired, rsa_random=float(np.nanmean(rsa_random)) if np.isfinite(rsa_random).any() else float("nan"),
        n_alive_a=int(alive_a.sum()), n_alive_b=int(alive_b.sum()), n_pairs=int(pairs_b.size), reasons=reasons,
        params={"exclude_first_token": exclude_first_token, "max_rows": max_rows, "n_random": n_random,
                "min_correlation": min_correlation, "max_pairs": max_pairs, "seed": seed, "version": FEATURES_VERSION},
    )


_MATCH_ARRAYS = ("partner", "correlation", "random_correlation")
_MATCH_SCALARS = ("level", "n_rows", "mean_paired", "mean_random", "random_std", "svcca_paired", "svcca_random",
                  "rsa_paired", "rsa_random", "n_alive_a", "n_alive_b", "n_pairs", "reasons", "params")


def matching_params(a: StoredSAE, b: StoredSAE, *, max_rows: int = 8192, n_random: int = 10,
                    min_correlation: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """The store parameters of a matching of two stored SAEs."""
    return {"a": a.key, "b": b.key, "max_rows": max_rows, "n_random": n_random, "min_correlation": min_correlation,
            "seed": seed, "exclude_first_token": a.exclude_first_token or b.exclude_first_token,
            "version": FEATURES_VERSION}


def _matching_from_store(a: StoredSAE, b: StoredSAE, arrays: Mapping[str, np.ndarray],
                         meta: Mapping[str, Any]) -> FeatureMatching:
    scalars = {name: _nan_from_json(value) for name, value in meta["matching"].items()}
    return FeatureMatching(sae_a=a.key, sae_b=b.key, **{k: np.asarray(v) for k, v in arrays.items()}, **scalars)


def stored_matching(a: StoredSAE, b: StoredSAE, store: Store, **options: Any) -> FeatureMatching | None:
    """The stored matching of two SAEs, or None when it has not been computed yet."""
    hit = store.load_result("sae_matching", matching_params(a, b, **options))
    return None if hit is None else _matching_from_store(a, b, *hit)


def match_features_cached(
    a: StoredSAE,
    b: StoredSAE,
    acts_a: Activations,
    acts_b: Activations,
    store: Store,
    *,
    max_rows: int = 8192,
    n_random: int = 10,
    min_correlation: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> FeatureMatching:
    """match_features of two stored SAEs on their own runs, through the store."""
    params = matching_params(a, b, max_rows=max_rows, n_random=n_random, min_correlation=min_correlation, seed=seed)

    def compute():
        result = match_features(a.sae, acts_a, a.layer, b.sae, acts_b, b.layer, keys=(a.key, b.key),
                                exclude_first_token=params["exclude_first_token"], max_rows=max_rows,
                                n_random=n_random, min_correlation=min_correlation, seed=seed, device=device,
                                progress=progress)
        return ({name: getattr(result, name) for name in _MATCH_ARRAYS},
                {"matching": {name: getattr(result, name) for name in _MATCH_SCALARS}})

    return _matching_from_store(a, b, *store.cached_result("sae_matching", params, compute))


def _nan_from_json(value: Any) -> Any:
    return float("nan") if value is None else value


# ----- search ---------------------------------------------------------------------------------------
def search_features(stats: FeatureStats, acts: Activations, query: str, *, top: int = 5) -> np.ndarray:
    """Latent ids whose `top` strongest tokens include `query` (a token, case-insensitive), else whose
    top examples' input texts contain it; ordered by the activation on the match, strongest first."""
    query = query.strip().lower()
    if not query:
        return np.arange(stats.n_features)
    tokens = np.array([t.strip().lower() for t in readable_tokens(acts.tokens)], dtype=object)
    rows = stats.top_rows[:, :top]
    values = stats.top_values[:, :top]
    valid = rows >= 0
    hit = np.zeros(rows.shape, dtype=bool)
    hit[valid] = tokens[rows[valid]] == query
    if not hit.any():
        owner = np.searchsorted(acts.offsets, np.where(valid, rows, 0), side="right") - 1
        texts = np.array([t.lower() for t in acts.texts], dtype=object)
        contains = np.array([query in t for t in texts])
        hit = valid & contains[owner]
    strength = np.where(hit, values, -np.inf).max(axis=1)
    found = np.flatnonzero(np.isfinite(strength))
    return found[np.argsort(-strength[found], kind="stable")]
