"""What a page will compute, decided from its widgets and the workspace's runs (no streamlit here).

Geometry: which metric sets to compute on which runs, whose untrained twin is stored or
still to extract, and how each curve is named in the legend. Compare: which runs can be
model B (the same inputs as model A). Logit lens: which models the page offers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.recipes.geometry import legend_names
from core.runs import find_twin, is_untrained

Run = Mapping[str, Any]  # a run's metadata, as Store.list_runs gives it
GeometryJob = tuple[tuple[str, ...], dict[str, Any]]  # (metrics, options of core's geometry_by_layer)


# ----- geometry ----------------------------------------------------------------------------------
def geometry_jobs(metrics: Sequence[str], curvature_variants: Sequence[str], id_methods: Sequence[str],
                  entropy_alpha: float, *, entropy_variants: Sequence[str] = ("exact",),
                  curvature_degenerate: str = "skip") -> list[GeometryJob]:
    """One job for every chosen metric with the first variant of each, then one per further variant.

    curvature_degenerate goes with the "abs" curvature variant only (Skean's convention); options at
    their default are left out of a job, so its stored results keep their keys.
    """
    def curvature(v: str) -> dict[str, Any]:
        zero = v == "abs" and curvature_degenerate != "skip"
        return {"curvature_variant": v, **({"curvature_degenerate": curvature_degenerate} if zero else {})}

    def entropy(v: str) -> dict[str, Any]:
        return {"entropy_alpha": float(entropy_alpha), **({"entropy_variant": v} if v != "exact" else {})}

    jobs: list[GeometryJob] = [(tuple(metrics), {**curvature(curvature_variants[0]), "id_method": id_methods[0],
                                                 **entropy(entropy_variants[0])})]
    if "curvature" in metrics:
        jobs += [(("curvature",), curvature(v)) for v in curvature_variants[1:]]
    if "intrinsic_dimension" in metrics:
        jobs += [(("intrinsic_dimension",), {"id_method": m}) for m in id_methods[1:]]
    entropies = tuple(m for m in metrics if m in ("dataset_entropy", "prompt_entropy"))
    if entropies:
        jobs += [(entropies, entropy(v)) for v in entropy_variants[1:]]
    return jobs


@dataclass
class GeometryEntry:
    """One run drawn on the geometry page."""

    name: str  # legend name
    run: Run
    control: bool  # an untrained twin, drawn as a control


@dataclass
class GeometryPlan:
    """The runs, metric jobs and twins behind the geometry page's figures."""

    compared: list[Run]  # the page's run, then the second run if one was picked
    jobs: list[GeometryJob]
    twins: dict[str, Run | None] = field(default_factory=dict)  # run key -> its stored twin, None: to extract
    untrained: list[Run] = field(default_factory=list)  # compared runs that are twins themselves

    @property
    def request(self) -> tuple:
        """A hashable name of everything computed (remembered so that a rerun needs no click)."""
        return (tuple(r["key"] for r in self.compared), tuple(self.twins),
                tuple((metrics, tuple(sorted(options.items()))) for metrics, options in self.jobs))

    @property
    def missing_twins(self) -> list[Run]:
        """Compared runs whose twin must be extracted first."""
        return [r for r in self.compared if r["key"] in self.twins and self.twins[r["key"]] is None]

    def summary(self) -> str:
        """What computing the plan does, in a sentence."""
        work = [f"{len(self.jobs)} metric set(s) x {len(self.compared) + len(self.twins)} run(s)"]
        if self.missing_twins:
            work.append("extracting the untrained twin of " + ", ".join(r["model"]["name"] for r in self.missing_twins))
        return "; ".join(work)

    def update_twins(self, runs: Sequence[Run]) -> None:
        """Look the missing twins up again (after extracting them)."""
        for run in self.missing_twins:
            self.twins[run["key"]] = find_twin(run, runs)

    def run_keys(self) -> list[str]:
        """Every run to compute on: the compared runs and their stored twins."""
        return [r["key"] for r in self.compared] + [t["key"] for t in self.twins.values() if t]

    def entries(self) -> list[GeometryEntry]:
        """The runs drawn, each followed by its twin."""
        out = []
        for run, name in zip(self.compared, legend_names(self.compared)):
            out.append(GeometryEntry(name, run, False))
            twin = self.twins.get(run["key"])
            if twin is not None:
                out.append(GeometryEntry(name.replace(run["model"]["name"], twin["model"]["name"], 1), twin, True))
        return out

    def jobs_with(self, metric: str) -> list[int]:
        """Indices of the jobs computing `metric`."""
        return [i for i, (metrics, _) in enumerate(self.jobs) if metric in metrics]


def plan_geometry(run: Run, runs: Sequence[Run], *, second: str | None, jobs: list[GeometryJob],
                  with_twin: bool) -> GeometryPlan:
    """The plan for `run` (and the run keyed `second`), with untrained twins if asked for."""
    plan = GeometryPlan([run] + [r for r in runs if r["key"] == second and r["key"] != run["key"]], jobs)
    if with_twin:
        for r in plan.compared:
            if is_untrained(r):
                plan.untrained.append(r)
            else:
                plan.twins[r["key"]] = find_twin(r, runs)
    return plan


# ----- compare -----------------------------------------------------------------------------------
def same_inputs(run: Run, runs: Sequence[Run]) -> list[Run]:
    """Runs over the same inputs as `run` in the same order (itself included)."""
    return [r for r in runs
            if r["dataset"]["fingerprint"] == run["dataset"]["fingerprint"] and r["n_inputs"] == run["n_inputs"]]


def partner_model(run: Run, models: Sequence[str]) -> int:
    """Index of the bundled model offered as a partner: the first one that is not the run's own."""
    others = [m for m in models if m != run["model"]["name"]]
    return models.index(others[0]) if others else 0


# ----- logit lens --------------------------------------------------------------------------------
def lens_models(runs: Sequence[Run], current: Run | None, default: str) -> tuple[list[str], str]:
    """Models the lens offers (trained models of the runs, and `default`), and the one picked first."""
    names = list(dict.fromkeys([r["model"]["name"] for r in runs if not is_untrained(r)] + [default]))
    chosen = current["model"]["name"] if current is not None and current["model"]["name"] in names else default
    return names, chosen


def is_encoder(runs: Sequence[Run], model_name: str) -> bool:
    """A run says `model_name` is not a causal LM (so the lens can say why at once)."""
    return any(r["model"]["name"] == model_name and not r["model"].get("is_causal_lm") for r in runs)
