"""Reports and regeneration: every figure of some runs as a folder + zip, and figures rebuilt from sidecars.

    report = write_report(store, [run_key], "report/")   # folder + report.zip, atomically
    regenerate("report/figures/03-probe-topic.json", store)

Figures are built by their recipes (core.recipes), the same functions the pages call.
"""

from core.recipes import FIGURES, BuiltFigure, Context, build_figure, check_params, figure_kinds, register
from core.report.dynamics_plan import plan_series_report
from core.report.plan import plan_report
from core.report.regenerate import Regenerated, find_sidecars, regenerate
from core.report.write import ReportResult, write_report

__all__ = [
    "FIGURES", "BuiltFigure", "Context", "ReportResult", "Regenerated", "build_figure", "check_params",
    "figure_kinds", "find_sidecars", "plan_report", "plan_series_report", "regenerate", "register", "write_report",
]
