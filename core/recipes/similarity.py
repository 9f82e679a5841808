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
from core.validation import check_choice

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
                      rows: str = "inputs") -> BuiltFigure:
    """Compare's layer x layer similarity heatmap of two runs (`selected`: the outlined cell, layer A and B).

    rows: "inputs" or "tokens" (see `similarity_of_runs`).
    """
    from core.figures.similarity import similarity_heatmap

    key_a, key_b = run_keys(runs, "similarity_heatmap", 2)
    acts_a, acts_b = context.run(key_a), context.run(key_b)
    result = similarity_result(context, acts_a, acts_b, metric, metric_params or {}, rows)
    title = title or f"{result.label}: {acts_a.model_name} vs {acts_b.model_name} on {acts_a.dataset_name}"
    fig = similarity_heatmap(result, title=title, selected=tuple(selected) if selected else None,
                             fit_colours=fit_colours)
    analysis = {"metric": result.metric, "variant": result.label, "parameters": result.params,
                "seeds": {"subsample": result.seed}, "n": result.n, "max_points": result.max_points,
                "rows": result.info.get("rows", rows)}
    caption = (f"{result.label} between every layer of {acts_a.model_name} (A) and {acts_b.model_name} (B), "
               f"{rows_caption(result, acts_a, acts_b)}.")
    return BuiltFigure(fig, result.to_frame(), analysis, caption,
                       f"similarity-{result.metric}-{acts_a.model_name}-{acts_b.model_name}", result=result)
