"""The demo workspace every page opens on, and how `make run` prepares it in two parts.

light  `python -m core demo`, before the server answers: minilm on demo:sentences (mean-pooled and
       per-token) and on demo:cities — the explorer, probes, Train SAE and trajectory.
heavy  `python -m core demo --heavy`, in the background once the server answers: the geometry the
       Geometry page opens with, two small TopK SAEs on the middle minilm layer (seeds 0 and 1) with
       their feature statistics and their matching, minilm's untrained twin, and smollm2 on
       demo:sentences — the feature gallery, feature matching, geometry, compare and logit lens.

Every step is skipped when its result is in the workspace. The heavy part runs in a background
process (core.demo_background) that writes its progress to <workspace>/demo/progress.json
(core.demo_progress). `LAYERSCOPE_DEMO_SIZE=test`
prepares the same things on fewer inputs with shorter SAE training (for the browser tests).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import LayerscopeError
from core.store import Store
from core.validation import check_choice

logger = logging.getLogger(__name__)

SIZE_ENV = "LAYERSCOPE_DEMO_SIZE"
SAE_MODEL, SAE_DATA = "minilm", "demo:sentences"  # the run the demo SAEs are trained on (pooling="tokens")
GEOMETRY_METRICS = {  # what the Geometry page opens with on a run of each kind (dashboard/run_choice.py)
    "tokens": ("curvature", "intrinsic_dimension"),
    "pooled": ("intrinsic_dimension", "dataset_entropy"),
}


@dataclass(frozen=True)
class DemoSize:
    """How much the demo prepares: every bundled input, or a few for the tests."""

    name: str
    sentences: int | None  # inputs of demo:sentences kept (None: all 864)
    cities: int | None  # inputs of demo:cities kept (None: all 3000)
    sae_steps: int  # optimiser steps of each demo SAE
    sae_batch: int  # tokens per step
    time_scale: float  # expected seconds relative to the full size


SIZES = {
    "full": DemoSize("full", None, None, sae_steps=300, sae_batch=512, time_scale=1.0),
    "test": DemoSize("test", 160, 300, sae_steps=60, sae_batch=256, time_scale=0.3),
}


def demo_size(name: str | None = None) -> DemoSize:
    """The size named `name`, else $LAYERSCOPE_DEMO_SIZE, else "full"."""
    return SIZES[check_choice("size", name or os.environ.get(SIZE_ENV) or "full", SIZES)]


def sae_config(size: DemoSize, seed: int):
    """The demo SAEs' training: TopK, 2x wide, k=16, `size.sae_steps` steps, one seed each."""
    from core.analysis.sae import SAEConfig

    return SAEConfig(architecture="topk", expansion=2.0, k=16, lr=2e-3, batch_size=size.sae_batch,
                     training_tokens=size.sae_batch * size.sae_steps, seed=seed, dead_window=5000)


# ----- the steps -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoStep:
    """One thing the demo workspace holds."""

    name: str
    title: str  # what is prepared, as a progress note says it
    part: str  # "light" (before the server answers) or "heavy" (in the background)
    expected_s: float  # seconds at full size on a 2-core CPU, before the size's time_scale
    needs: tuple[str, ...] = ()  # steps whose results it reads


STEPS = (  # expected_s: CPU seconds measured on a 2-core x86 CPU (about the wall time on an idle one)
    DemoStep("minilm-mean", "minilm on demo:sentences (mean-pooled)", "light", 30),
    DemoStep("minilm-tokens", "minilm on demo:sentences (per token)", "light", 40),
    DemoStep("minilm-cities", "minilm on demo:cities (mean-pooled)", "light", 36),
    DemoStep("geometry", "geometry of the minilm runs", "heavy", 15, ("minilm-mean", "minilm-tokens")),
    DemoStep("sae", "the demo SAE (minilm, middle layer) and its feature statistics", "heavy", 95,
             ("minilm-tokens",)),
    DemoStep("sae-seed1", "a second SAE (another seed) and its feature statistics", "heavy", 85, ("minilm-tokens",)),
    DemoStep("matching", "the matching of the two SAEs' features", "heavy", 8, ("sae", "sae-seed1")),
    DemoStep("twin", "minilm's untrained twin on demo:sentences", "heavy", 26, ("minilm-mean",)),
    DemoStep("smollm2", "smollm2 on demo:sentences (mean-pooled)", "heavy", 215),
)
STEP_NAMES = tuple(s.name for s in STEPS)
RUN_STEPS = {  # extraction steps: (model, dataset, pooling)
    "minilm-mean": ("minilm", "demo:sentences", "mean"),
    "minilm-tokens": ("minilm", "demo:sentences", "tokens"),
    "minilm-cities": ("minilm", "demo:cities", "mean"),
    "smollm2": ("smollm2", "demo:sentences", "mean"),
}
SAE_SEEDS = {"sae": 0, "sae-seed1": 1}


def steps(part: str) -> list[DemoStep]:
    """The steps of the light or the heavy part, in the order they run."""
    check_choice("part", part, ("light", "heavy"))
    return [s for s in STEPS if s.part == part]


class DemoWorkspace:
    """The demo workspace of one store at one size: which steps are stored, and how to run each.

    load_model: `core.load_model` or a cached wrapper of it (called with the model name, `reinit`, `seed`).
    """

    def __init__(self, store: Store, size: DemoSize, *, load_model: Callable[..., Any] | None = None) -> None:
        self.store = store
        self.size = size
        self._load_model = load_model
        self._models: dict[tuple[str, bool], Any] = {}

    # ----- what is there ----------------------------------------------------------------------
    def dataset(self, spec: str):
        from core.data import load_dataset

        limit = {"demo:sentences": self.size.sentences, "demo:cities": self.size.cities}.get(spec)
        return load_dataset(spec, limit=limit)

    def model(self, name: str, *, reinit: bool = False):
        if (name, reinit) not in self._models:
            if self._load_model is not None:
                self._models[name, reinit] = self._load_model(name, reinit=reinit, seed=0)
            else:
                from core.models import load_model

                self._models[name, reinit] = load_model(name, reinit=reinit, seed=0, workspace=self.store.root)
        return self._models[name, reinit]

    def find_run(self, step: str) -> dict | None:
        """The stored run of an extraction step (same model, inputs and pooling), the one with most layers."""
        from core.runs import is_untrained

        model, data, pooling = RUN_STEPS[step]
        fingerprint = self.dataset(data).fingerprint
        found = [r for r in self.store.list_runs() if r["model"]["name"] == model and not is_untrained(r)
                 and r["dataset"]["fingerprint"] == fingerprint and r["pooling"] == pooling]
        return max(found, key=lambda r: len(r["layers"]), default=None)

    def run(self, step: str):
        """The stored run of an extraction step as Activations; says what to run when it is missing."""
        found = self.find_run(step)
        if found is None:
            raise LayerscopeError(f"the demo workspace has no run of {RUN_STEPS[step][0]} on {RUN_STEPS[step][1]} "
                                  f"({RUN_STEPS[step][2]}); prepare it with `python -m core demo`")
        return self.store.open_run(found["key"])

    def sae_key(self, step: str) -> str:
        from core.analysis.sae import sae_key

        acts = self.run("minilm-tokens")
        return sae_key(acts.key, self.sae_layer(acts), sae_config(self.size, SAE_SEEDS[step]))

    @staticmethod
    def sae_layer(acts) -> str:
        """The middle layer (the one Train SAE opens on)."""
        return acts.layer_names[len(acts.layer_names) // 2]

    def stored(self, step: str) -> bool:
        """The step's result is in the workspace (checked without computing anything)."""
        from core.analysis import features as ft
        from core.analysis import sae as sae_core
        from core.analysis.geometry import geometry_by_layer
        from core.analysis.sae.entries import has_sae
        from core.runs import find_twin

        try:
            if step in RUN_STEPS:
                return self.find_run(step) is not None
            if step == "twin":
                mean = self.find_run("minilm-mean")
                return mean is not None and find_twin(mean, self.store.list_runs()) is not None
            if step in SAE_SEEDS:
                key = self.sae_key(step)
                return (has_sae(self.store, key) and ft.stored_feature_stats(
                    sae_core.open_sae(self.store, key), self.store) is not None)
            if step == "matching":
                a, b = self._matching_pair()
                return ft.stored_matching(a, b, self.store) is not None
            if step == "geometry":
                return all(geometry_by_layer(acts, metrics, store=self.store, stored_only=True) is not None
                           for acts, metrics in self._geometry_runs())
        except LayerscopeError:  # a run or SAE it reads is missing: not stored
            return False
        raise LayerscopeError(f"step={step!r} must be one of: {', '.join(STEP_NAMES)}")

    # ----- how each step is prepared ------------------------------------------------------------
    def prepare(self, step: str, progress=None) -> None:
        """Prepare one step (a stored result is read back, not computed again)."""
        from core.analysis import features as ft
        from core.analysis.geometry import geometry_by_layer
        from core.analysis.sae import train_sae_on_run
        from core.extract import extract
        from core.runs import extract_twin, find_twin

        if step in RUN_STEPS:
            model, data, pooling = RUN_STEPS[step]
            if self.find_run(step) is None:
                extract(self.model(model), self.dataset(data), layers="all", pooling=pooling, store=self.store,
                        progress=progress)
        elif step == "twin":
            mean = self.run("minilm-mean")
            if find_twin(mean, self.store.list_runs()) is None:
                extract_twin(mean, self.store, load_model=lambda name, **kw: self.model(name, reinit=True),
                             progress=progress)
        elif step == "geometry":
            runs = self._geometry_runs()
            for i, (acts, metrics) in enumerate(runs):
                geometry_by_layer(acts, metrics, store=self.store, progress=_part(progress, i, len(runs)))
        elif step in SAE_SEEDS:
            acts = self.run("minilm-tokens")
            config = sae_config(self.size, SAE_SEEDS[step])

            def trained(done: int, total: int, metrics) -> None:
                if progress is not None:
                    progress(done, 2 * total, f"training: step {done:,} of {total:,}, FVE {metrics['fve']:.2f}")

            entry = train_sae_on_run(acts, self.sae_layer(acts), config, store=self.store, progress=trained)
            ft.feature_stats_cached(entry, acts, self.store, progress=_part(progress, 1, 2))
        elif step == "matching":
            a, b = self._matching_pair()
            acts = self.run("minilm-tokens")
            ft.match_features_cached(a, b, acts, acts, self.store, progress=progress)
        else:
            raise LayerscopeError(f"step={step!r} must be one of: {', '.join(STEP_NAMES)}")

    def _geometry_runs(self) -> list[tuple[Any, tuple[str, ...]]]:
        """The runs Geometry may open on, each with the metrics it opens with (default options)."""
        return [(self.run("minilm-tokens"), GEOMETRY_METRICS["tokens"]),
                (self.run("minilm-mean"), GEOMETRY_METRICS["pooled"])]

    def _matching_pair(self):
        """The two demo SAEs in the order Feature matching opens on them (the newer one is SAE A)."""
        from core.analysis import sae as sae_core

        keys = {self.sae_key("sae"), self.sae_key("sae-seed1")}
        listed = [m["key"] for m in sae_core.list_saes(self.store) if m["key"] in keys]
        if len(listed) < 2:
            raise LayerscopeError("the demo SAEs are not both in the workspace")
        return sae_core.open_sae(self.store, listed[0]), sae_core.open_sae(self.store, listed[1])


def _part(progress, index: int, count: int):
    """A progress callback for part `index` of `count` equal parts of one step."""
    if progress is None:
        return None
    return lambda done, total, what="": progress(index * total + done, count * total, what)


# ----- running a part ------------------------------------------------------------------------------
def prepare_light(store: Store, *, size: DemoSize | None = None, load_model=None,
                  progress_for: Callable[[DemoStep], Any] | None = None) -> dict[str, dict]:
    """Extract the light part's runs (each skipped when stored); returns each step's run metadata by name.

    progress_for(step): the progress callback of that step's extraction (e.g. a bar), or None.
    """
    demo = DemoWorkspace(store, size or demo_size(), load_model=load_model)
    prepared = {}
    for step in steps("light"):
        demo.prepare(step.name, progress=progress_for(step) if progress_for else None)
        prepared[step.name] = demo.find_run(step.name)
    return prepared


def step_titles(names: Sequence[str]) -> list[str]:
    """The titles of the named steps, in plan order."""
    return [s.title for s in STEPS if s.name in names]
