"""Logit-lens figures of a causal LM on one text: the top-token heatmap and the KL-to-final curve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from core.export.tables import figure_table
from core.progress import Progress, report
from core.recipes.context import Context
from core.recipes.registry import BuiltFigure, register
from core.validation import check_int


def lens_result(context: Context, model: str, text: str, top_k: int, progress: Progress | None = None):
    """(the model's identity, its LensResult on `text`), computed once per context (the model loaded once).

    progress hears of the work only when it is computed: loading the model, then core's logit_lens.
    """
    from core.analysis.lens import logit_lens

    top_k = check_int("top_k", top_k, low=1)

    def compute():
        report(progress, 0, 1, f"loading {model}")
        loaded = context.model(model)
        return dict(loaded.identity), logit_lens(loaded, text, top_k=top_k, progress=progress)

    return context.cached(("lens", model, text, top_k), compute)


def _lens_analysis(identity: dict[str, Any], result) -> dict[str, Any]:
    return {"metric": "KL(p_final || p_layer) (nats)", "variant": "logit lens (final norm + unembedding)",
            "parameters": {**result.params, "text": result.text}, "model": identity, "seeds": {}}


@register("lens_heatmap", page="views/lens.py")
def lens_heatmap_recipe(context: Context, runs, *, model: str, text: str, top_k: int = 5,
                        positions: Sequence[int] | None = None, title: str | None = None) -> BuiltFigure:
    """The Logit lens page's heatmap of the top next token per layer and position (`positions`: a window)."""
    from core.figures.lens import lens_heatmap

    identity, result = lens_result(context, model, text, top_k)
    fig = lens_heatmap(result, positions=tuple(positions) if positions else None, title=title)
    caption = f"Logit lens of {model}: each layer's top next token at each position, coloured by its probability."
    return BuiltFigure(fig, figure_table(fig), _lens_analysis(identity, result), caption, f"lens-{model}",
                       result=result)


@register("kl_curve", page="views/lens.py")
def kl_curve_recipe(context: Context, runs, *, model: str, text: str, top_k: int = 5,
                    title: str | None = None) -> BuiltFigure:
    """The Logit lens page's KL divergence of each layer's readout to the model's output."""
    from core.figures.lens import kl_curve

    identity, result = lens_result(context, model, text, top_k)
    fig = kl_curve(result, title=title)
    table = pd.DataFrame({"layer": list(result.layer_names), "mean_kl_nats": result.mean_kl})
    caption = (f"Logit lens of {model}: KL divergence of each layer's readout to the model's output, "
               "mean over positions.")
    return BuiltFigure(fig, table, _lens_analysis(identity, result), caption, f"lens-kl-{model}", result=result)
