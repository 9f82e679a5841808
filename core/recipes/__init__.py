"""Figure recipes: every figure the pages draw, built by one registered function.

The dashboard's pages, `python -m core report` and `python -m core figure --from` build
figures here, so a figure looks and holds the same data wherever it appears::

    from core.recipes import Context, build, build_figure
    built = build_figure({"figure": "probe_curve", "runs": [key], "params": {"column": "topic"}}, store)
    built.figure, built.table, built.spec     # plotly Figure, the data behind it, what rebuilds it

One module per page area registers its recipes: maps, probes, similarity, geometry
(curves and trajectories), lens and sae.
"""

from core.recipes.context import Context
from core.recipes.registry import (
    FIGURES,
    RECIPES,
    BuiltFigure,
    Recipe,
    build,
    build_figure,
    check_params,
    figure_kinds,
    get_recipe,
    register,
)
from core.recipes import dynamics, geometry, interventions, lens, maps, probes, sae, similarity  # noqa: E402,F401  (register the recipes)

__all__ = [
    "FIGURES", "RECIPES", "BuiltFigure", "Context", "Recipe", "build", "build_figure", "check_params",
    "figure_kinds", "get_recipe", "register",
]
