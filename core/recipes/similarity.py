"""Compare's layer x layer similarity heatmap of two runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register, run_keys


def similarity_result(context: Context, acts_a, acts_b, metric: str, params: Mapping[str, Any]):
    """The SimilarityResult of every layer pair of two runs, through the store."""
    from core.analysis.similarity import similarity_matrix

    def compute():
        return similarity_matrix(acts_a, acts_b, metric, store=context.store, **dict(params))

    key = ("similarity", acts_a.key, acts_b.key, metric, json.dumps(dict(params), sort_keys=True, default=str))
    return context.cached(key, compute)


@register("similarity_heatmap", page="views/compare.py")
def similarity_recipe(context: Context, runs, *, metric: str = "linear_cka",
                      metric_params: Mapping[str, Any] | None = None, title: str | None = None,
                      fit_colours: bool = False, selected: Sequence[str] | None = None) -> BuiltFigure:
    """Compare's layer x layer similarity heatmap of two runs (`selected`: the outlined cell, layer A and B)."""
    from core.figures.similarity import similarity_heatmap

    key_a, key_b = run_keys(runs, "similarity_heatmap", 2)
    acts_a, acts_b = context.run(key_a), context.run(key_b)
    result = similarity_result(context, acts_a, acts_b, metric, metric_params or {})
    title = title or f"{result.label}: {acts_a.model_name} vs {acts_b.model_name} on {acts_a.dataset_name}"
    fig = similarity_heatmap(result, title=title, selected=tuple(selected) if selected else None,
                             fit_colours=fit_colours)
    analysis = {"metric": result.metric, "variant": result.label, "parameters": result.params,
                "seeds": {"subsample": result.seed}, "n": result.n, "max_points": result.max_points}
    caption = (f"{result.label} between every layer of {acts_a.model_name} (A) and {acts_b.model_name} (B), "
               f"{result.n} inputs.")
    return BuiltFigure(fig, result.to_frame(), analysis, caption,
                       f"similarity-{result.metric}-{acts_a.model_name}-{acts_b.model_name}", result=result)
