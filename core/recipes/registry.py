"""The figure registry: each figure the pages draw, by name, and the one function that builds it.

A recipe is `build(context, runs, **params) -> BuiltFigure`: it reads its runs through the
context, gets the analysis result (from the store when computed before) and draws it with
a core.figures function. The pages, `python -m core report` and `python -m core figure
--from` all call recipes, so a figure is drawn by one piece of code wherever it appears.

    @register("probe_curve", page="views/probes.py")
    def probe_curve_recipe(context, runs, *, column, title=None) -> BuiltFigure: ...

    built = build_figure(figure_spec("probe_curve", [key], column="topic"), store)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core.errors import LayerscopeError
from core.export.sidecar import figure_spec
from core.recipes.context import Context


@dataclass
class BuiltFigure:
    """A figure built by its recipe, with the data behind it and what produced it."""

    figure: go.Figure  # screen style, exactly as the dashboard draws it
    table: pd.DataFrame  # the data behind the figure (CSV / Parquet)
    analysis: dict[str, Any]  # metric, variant, parameters, seeds
    caption: str  # one or two sentences for a report
    name: str  # a file-name stem
    spec: dict[str, Any] = field(default_factory=dict)  # figure_spec(...) that rebuilds it (the sidecar's)
    result: Any = None  # the analysis result drawn (ProbeResult, LensResult, ...), for the page's numbers


Build = Callable[..., BuiltFigure]  # build(context, runs: list[str], **params) -> BuiltFigure


@dataclass(frozen=True)
class Recipe:
    """One registered figure: its name in specs, the function that builds it, the page that shows it."""

    name: str  # the spec's "figure"
    build: Build  # build(context, runs, **params) -> BuiltFigure
    page: str  # the dashboard page drawing it, e.g. "views/probes.py"
    summary: str  # one line: what the figure shows

    def __call__(self, context: Context, runs: Sequence[str], **params: Any) -> BuiltFigure:
        return self.build(context, list(runs), **params)


RECIPES: dict[str, Recipe] = {}
FIGURES = RECIPES  # the name earlier releases used


def register(name: str, *, page: str = "") -> Callable[[Build], Build]:
    """Decorator: make `name` a figure that `build_figure` builds with the decorated function."""

    def add(build: Build) -> Build:
        summary = (inspect.getdoc(build) or name).splitlines()[0]
        RECIPES[name] = Recipe(name=name, build=build, page=page, summary=summary)
        return build

    return add


def figure_kinds() -> list[str]:
    """Names of every registered figure, sorted."""
    import core.recipes  # noqa: F401  (its modules register the recipes)

    return sorted(RECIPES)


def get_recipe(kind: Any) -> Recipe:
    """The recipe named `kind`; LayerscopeError naming the known ones otherwise."""
    if kind not in figure_kinds():
        raise LayerscopeError(
            f"figure={kind!r} is not a figure this Layerscope can rebuild; known: {', '.join(figure_kinds())}"
        )
    return RECIPES[kind]


def check_params(spec: Mapping[str, Any]) -> None:
    """LayerscopeError when a spec's params do not fit its recipe (e.g. a hand-edited sidecar)."""
    recipe = RECIPES.get(spec.get("figure"))
    if recipe is None:
        return
    try:
        inspect.signature(recipe.build).bind(None, [], **dict(spec.get("params") or {}))
    except TypeError as err:
        raise LayerscopeError(f"figure {spec.get('figure')!r}: {err}") from None


def build_figure(
    spec: Mapping[str, Any],
    store=None,
    *,
    load_model: Callable[[str], Any] | None = None,
    context: Context | None = None,
) -> BuiltFigure:
    """Build the figure a spec names, computing through the store (instant for stored results).

    context: shared by several builds so each run is opened and each result computed once
    (default: a new one over `store` and `load_model`).
    Raises LayerscopeError for an unknown figure kind, a run missing from the store or bad params.
    """
    kind = spec.get("figure") if isinstance(spec, Mapping) else None
    recipe = get_recipe(kind)
    check_params(spec)
    if context is None:
        if store is None:
            raise LayerscopeError("build_figure needs a store (or a context holding one)")
        context = Context(store, load_model=load_model)
    runs = [str(key) for key in spec.get("runs") or []]
    params = dict(spec.get("params") or {})
    built = recipe(context, runs, **params)
    built.spec = figure_spec(kind, runs, **params)
    return built


def build(context: Context, figure: str, runs: Sequence[str] = (), **params: Any) -> BuiltFigure:
    """`build_figure` of `figure_spec(figure, runs, **params)` with a shared context (what pages call)."""
    return build_figure(figure_spec(figure, runs, **params), context=context)


def run_keys(runs: Sequence[str], kind: str, count: int = 1) -> list[str]:
    """`runs` if it holds `count` keys; LayerscopeError saying how many the figure needs otherwise."""
    if len(runs) != count:
        raise LayerscopeError(f"figure {kind!r} needs {count} run key(s); got {len(runs)}")
    return list(runs)
