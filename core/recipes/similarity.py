"""Compare's layer x layer similarity heatmap of two runs, with rows of inputs or of tokens."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import LayerscopeError
from core.progress import Progress
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register, run_keys
from core.validation import check_choice, check_number

# what one row of the compared matrices is:
#   "inputs": one row per input; a per-token run gives each input's mean token vector
#   "tokens": one row per token; both runs per-token with the same tokens (ids and input boundaries)
ROWS = ("inputs", "tokens")
ROW_WORDS = {"inputs": "inputs", "tokens": "tokens"}


class TokenRows(Mapping[str, Any]):
    """A per-token run's layers as {layer: (n_tokens, d) rows}, read when asked for (memory-mapped)."""

    def __init__(self, acts: Any) -> None:
        self.acts = acts

    def __getitem__(self, layer: str) -> Any:
        return self.acts[layer]  # (n_tokens, d)

    def __iter__(self) -> Iterator[str]:
        return iter(self.acts.layer_names)

    def __len__(self) -> int:
        return len(self.acts.layer_names)


def check_same_tokens(acts_a: Any, acts_b: Any) -> None:
    """Raise unless both runs are per-token runs of the same inputs, tokenised alike (token rows align)."""
    from core.runs import check_same_inputs

    check_same_inputs(acts_a, acts_b, purpose="token rows need the same inputs")
    for acts in (acts_a, acts_b):
        if not acts.is_tokens:
            raise LayerscopeError(
                f"rows='tokens' needs per-token runs; run {acts.key} ({acts.model_name}) is {acts.pooling}-pooled: "
                "compare rows='inputs'"
            )
    if not (np.array_equal(acts_a.offsets, acts_b.offsets) and np.array_equal(acts_a.token_ids, acts_b.token_ids)):
        raise LayerscopeError(
            f"runs {acts_a.key} ({acts_a.model_name}) and {acts_b.key} ({acts_b.model_name}) tokenise the inputs "
            "differently, so their token rows do not align: compare rows='inputs' (each input's mean token vector)"
        )


def similarity_of_runs(store: Any, acts_a: Any, acts_b: Any, metric: str, params: Mapping[str, Any], *,
                       rows: str = "inputs", progress: Progress | None = None):
    """The SimilarityResult of every layer pair of two runs, through `store` (stored only when complete; None: not).

    rows: "inputs" (a per-token run gives each input's mean token vector) or "tokens" (one row per
    token; both runs per-token with the same tokens, see `check_same_tokens`); recorded in the
    result's info and, for "tokens", in its store key. progress(done, total, what) counts layer pairs.
    """
    from core.analysis.similarity import SimilarityResult, get_metric, similarity_matrix
    from core.analysis.similarity.matrix import DEFAULT_MAX_POINTS, SIMILARITY_VERSION

    check_choice("rows", rows, ROWS)
    if rows == "inputs":
        result = similarity_matrix(acts_a, acts_b, metric, store=store, progress=progress, **dict(params))
        return dataclasses.replace(result, info={**result.info, "rows": "inputs"})
    check_same_tokens(acts_a, acts_b)
    chosen = get_metric(metric)
    filled = chosen.fill_params(dict(params))
    a = TokenRows(acts_a)
    b = a if acts_b.key == acts_a.key else TokenRows(acts_b)  # one run on both sides: each layer prepared once

    def compute():
        result = similarity_matrix(a, b, chosen.name, progress=progress, **filled)
        info = {**result.info, "model_a": acts_a.model_name, "model_b": acts_b.model_name, "rows": "tokens"}
        return dataclasses.replace(result, run_a=acts_a.key, run_b=acts_b.key, info=info)

    key = {"run_a": acts_a.key, "run_b": acts_b.key, "metric": chosen.name, **filled,
           "layers_a": list(acts_a.layer_names), "layers_b": list(acts_b.layer_names), "seed": 0,
           "max_points": DEFAULT_MAX_POINTS, "rows": "tokens", "version": SIMILARITY_VERSION}
    return compute() if store is None else store.cached("similarity", key, compute, SimilarityResult)


def calibrated_of_runs(store: Any, acts_a: Any, acts_b: Any, metric: str, params: Mapping[str, Any], *,
                       kind: str, rows: str = "inputs", progress: Progress | None = None, **options: Any):
    """A NullResult (kind "null": `permutation_null`) or BootstrapResult (kind "bootstrap":
    `bootstrap_similarity`) of two runs, through `store`, with rows as `similarity_of_runs`.

    options: n_permutations, or n_boot, level, layers_a, layers_b; recorded in the store key.
    """
    from core.analysis.similarity import BootstrapResult, NullResult, bootstrap_similarity, permutation_null
    from core.analysis.similarity.bootstrap import BOOTSTRAP_VERSION
    from core.analysis.similarity.matrix import DEFAULT_MAX_POINTS, SIMILARITY_VERSION
    from core.analysis.similarity.null import NULL_VERSION

    check_choice("kind", kind, ("null", "bootstrap"))
    check_choice("rows", rows, ROWS)
    compute_with = permutation_null if kind == "null" else bootstrap_similarity
    if rows == "inputs":
        result = compute_with(acts_a, acts_b, metric, store=store, progress=progress, **options, **dict(params))
        return dataclasses.replace(result, info={**result.info, "rows": "inputs"})
    check_same_tokens(acts_a, acts_b)
    from core.analysis.similarity import get_metric

    filled = get_metric(metric).fill_params(dict(params))
    a = TokenRows(acts_a)
    b = a if acts_b.key == acts_a.key else TokenRows(acts_b)

    def compute():
        result = compute_with(a, b, metric, progress=progress, **options, **filled)
        info = {**result.info, "model_a": acts_a.model_name, "model_b": acts_b.model_name, "rows": "tokens"}
        return dataclasses.replace(result, run_a=acts_a.key, run_b=acts_b.key, info=info)

    version = NULL_VERSION if kind == "null" else BOOTSTRAP_VERSION
    key = {"run_a": acts_a.key, "run_b": acts_b.key, "metric": metric, **filled,
           **{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in options.items()},
           "layers_a": list(options.get("layers_a") or acts_a.layer_names),
           "layers_b": list(options.get("layers_b") or acts_b.layer_names), "seed": 0,
           "max_points": DEFAULT_MAX_POINTS, "rows": "tokens", "version": [SIMILARITY_VERSION, version]}
    result_type = NullResult if kind == "null" else BootstrapResult
    return compute() if store is None else store.cached(f"similarity_{kind}", key, compute, result_type)


def calibrated_result(context: Context, acts_a, acts_b, metric: str, params: Mapping[str, Any], rows: str,
                      kind: str, **options: Any):
    """`calibrated_of_runs` through the recipe context (computed once per key)."""

    def compute():
        return calibrated_of_runs(context.store, acts_a, acts_b, metric, params, kind=kind, rows=rows, **options)

    key = (f"similarity_{kind}", acts_a.key, acts_b.key, metric, json.dumps(dict(params), sort_keys=True, default=str),
           rows, json.dumps(options, sort_keys=True, default=str))
    return context.cached(key, compute)


def similarity_result(context: Context, acts_a, acts_b, metric: str, params: Mapping[str, Any],
                      rows: str = "inputs"):
    """The SimilarityResult of every layer pair of two runs, through the store (see `similarity_of_runs`)."""

    def compute():
        return similarity_of_runs(context.store, acts_a, acts_b, metric, params, rows=rows)

    key = ("similarity", acts_a.key, acts_b.key, metric, json.dumps(dict(params), sort_keys=True, default=str), rows)
    return context.cached(key, compute)


def rows_caption(result, acts_a, acts_b) -> str:
    """What a row was, in words: "864 inputs", "5,000 of 17,310 tokens (seed 0)", and how per-token runs entered."""
    rows = result.info.get("rows", "inputs")
    counted = (f"{result.n:,} of {result.n_inputs:,} {ROW_WORDS[rows]} (subsample seed {result.seed})"
               if result.n < result.n_inputs else f"{result.n:,} {ROW_WORDS[rows]}")
    if rows == "tokens":
        return f"{counted}, one row per token"
    sides = (acts_a,) if acts_a.key == acts_b.key else (acts_a, acts_b)
    pooled = [acts.model_name for acts in sides if acts.is_tokens]
    return counted + (f"; per-token {' and '.join(pooled)} as each input's mean token vector" if pooled else "")


@register("similarity_heatmap", page="views/compare.py")
def similarity_recipe(context: Context, runs, *, metric: str = "linear_cka",
                      metric_params: Mapping[str, Any] | None = None, title: str | None = None,
                      fit_colours: bool = False, selected: Sequence[str] | None = None,
                      rows: str = "inputs", n_permutations: int | None = None, alpha: float = 0.05,
                      n_boot: int | None = None) -> BuiltFigure:
    """Compare's layer x layer similarity heatmap of two runs (`selected`: the outlined cell, layer A and B).

    rows: "inputs" or "tokens" (see `similarity_of_runs`). n_permutations: calibrate every cell
    against a permutation null (cells with p >= alpha marked); None = off. n_boot: a bootstrap
    interval for the selected cell; None = off.
    """
    from core.analysis.similarity.bootstrap import BOOTSTRAP_STREAM
    from core.analysis.similarity.null import PERMUTATION_STREAM
    from core.figures.similarity import similarity_heatmap

    key_a, key_b = run_keys(runs, "similarity_heatmap", 2)
    acts_a, acts_b = context.run(key_a), context.run(key_b)
    result = similarity_result(context, acts_a, acts_b, metric, metric_params or {}, rows)
    title = title or f"{result.label}: {acts_a.model_name} vs {acts_b.model_name} on {acts_a.dataset_name}"
    null = interval = None
    analysis = {"metric": result.metric, "variant": result.label, "parameters": result.params,
                "seeds": {"subsample": result.seed}, "n": result.n, "max_points": result.max_points,
                "rows": result.info.get("rows", rows)}
    caption = (f"{result.label} between every layer of {acts_a.model_name} (A) and {acts_b.model_name} (B), "
               f"{rows_caption(result, acts_a, acts_b)}.")
    if n_permutations is not None:
        alpha = check_number("alpha", alpha, low=0, low_open=True, high=1)
        null = calibrated_result(context, acts_a, acts_b, metric, metric_params or {}, rows, "null",
                                 n_permutations=n_permutations)
        analysis["permutation_null"] = {"n_permutations": null.n_permutations, "alpha": alpha,
                                        "seed": [null.seed, PERMUTATION_STREAM], "permuted": "rows of B",
                                        "p_value": null.info["p_value"]}
        caption += (f" A grey x marks cells not above a permutation null ({null.n_permutations} shuffles of B's "
                    f"rows, p >= {alpha:g}; {int(null.above_null(alpha).sum())} of {null.p_value.size} cells above"
                    + (f"; with {null.n_permutations} permutations no p can be below {1 / (1 + null.n_permutations):.3g})."
                       if 1 / (1 + null.n_permutations) >= alpha else ")."))
    if n_boot is not None and selected:
        interval = calibrated_result(context, acts_a, acts_b, metric, metric_params or {}, rows, "bootstrap",
                                     n_boot=n_boot, layers_a=[selected[0]], layers_b=[selected[1]])
        cell = interval.cell(selected[0], selected[1])
        analysis["bootstrap"] = {"cell": list(selected[:2]), "n_boot": interval.n_boot, "level": interval.level,
                                 "seed": [interval.seed, BOOTSTRAP_STREAM], "duplicates": interval.duplicates,
                                 "low": cell["low"], "high": cell["high"]}
        caption += (f" Cell {selected[0]} x {selected[1]}: {cell['observed']:.3f}, {100 * interval.level:g}% "
                    f"bootstrap interval {cell['low']:.3f} to {cell['high']:.3f} ({interval.n_boot} resamples of "
                    f"the inputs, duplicates {interval.duplicates}).")
    fig = similarity_heatmap(result, title=title, selected=tuple(selected) if selected else None,
                             fit_colours=fit_colours, null=null, alpha=alpha)
    table = result.to_frame()
    if null is not None:  # the frame lists cells row by row, as ravel does
        table["null_mean"], table["null_std"] = null.null_mean.ravel(), null.null_std.ravel()
        table["p_value"] = null.p_value.ravel()
    return BuiltFigure(fig, table, analysis, caption,
                       f"similarity-{result.metric}-{acts_a.model_name}-{acts_b.model_name}", result=result)
