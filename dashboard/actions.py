"""What a page's button does: work that writes to the workspace and reports progress.

Each action calls core with a `core.progress.Progress` callback (the page's progress bar)
and, when it wrote a run or an SAE, clears the cached listings so that every page sees
it. None of this is wrapped in st.cache_data, so a progress bar is never replayed from a
cache; the results are read back through dashboard/cached.py and cached_sae.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import core
from core import runs
from core.analysis import features as ft
from core.analysis import sae as sae_core
from core.analysis.dynamics import (
    CheckpointMaps,
    DynamicsResult,
    checkpoint_maps,
    metric_by_checkpoint,
    similarity_to_final,
)
from core.analysis.features import FeatureMatching, FeatureStats
from core.analysis.geometry import GeometryResult, geometry_by_layer
from core.analysis.probes import probe_by_layer_cached
from core.analysis.projection import projection_cached
from core.analysis.sae import SAEConfig, StoredSAE
from core.analysis.similarity import SimilarityResult
from core.errors import LayerscopeError
from core.progress import Progress, report
from core.recipes.lens import lens_result
from core.recipes.similarity import calibrated_of_runs, similarity_of_runs
from core.series import Series, extract_series
from dashboard import cached, cached_sae, series_choice, state

TEXT_MODELS = ("minilm", "smollm2")  # bundled text models offered as comparison partners
DIGITS_PAIR = ("digits-mlp", "digits-mlp:seed=1")  # one architecture trained with two seeds
DIGITS_SEEDS = (0, 1)  # the training seed of each model of DIGITS_PAIR


# ----- runs ----------------------------------------------------------------------------------------
def extract(model: core.LoadedModel, dataset: core.Dataset, *, layers: Sequence[str], pooling: str,
            batch_size: int, progress: Progress | None = None) -> core.Activations:
    """Extract a run into the workspace and make it the current run."""
    acts = core.extract(model, dataset, layers=list(layers), pooling=pooling, batch_size=batch_size,
                        store=cached.store(), progress=progress)
    cached.list_runs.clear()
    state.set_run_key(acts.key)
    return acts


def extract_twin(run: Mapping[str, Any], progress: Progress | None = None) -> str:
    """Extract the run's inputs through the same architecture with re-initialised weights; returns its key."""
    acts = runs.extract_twin(run, cached.store(), load_model=cached.load_model, progress=progress)
    cached.list_runs.clear()
    return acts.key


def extract_partner(run: Mapping[str, Any], model_name: str, progress: Progress | None = None) -> str:
    """Extract `model_name` (bundled name, folder or hub id) on the text run's own inputs, with its default
    layers and the run's pooling; returns the new run's key."""
    model_name = model_name.strip()
    if not model_name:
        raise LayerscopeError("model='' must be a bundled model, a model folder or a hub id")
    model = cached.load_model(model_name)
    if model.modality != "text":
        raise LayerscopeError(f"model {model_name!r} takes {model.modality} inputs; run {run['key']} holds text")
    acts = core.extract(model, runs.run_dataset(cached.open_run(run["key"])), layers="all", pooling=run["pooling"],
                        max_length=run.get("max_length"), store=cached.store(), progress=progress)
    cached.list_runs.clear()
    return acts.key


def make_digits_pair(progress: Progress | None = None) -> tuple[str, str]:
    """Train digits-mlp with seeds 0 and 1 and extract both on demo:digits (a convergent-learning pair);
    the first becomes the current run. progress follows four steps: train and extract each model."""
    from core.models.bundled import digits_mlp_weights

    digits = core.load_dataset("demo:digits")
    steps = 2 * len(DIGITS_PAIR)

    def part(step: int, name: str, doing: str) -> Progress:
        def callback(done: int, total: int, what: str = "") -> None:
            share = 1000 * done // max(total, 1)  # training counts epochs, extraction batches: thousandths of a step
            how_far = what if doing == "training" else f"batch {done} of {total}"
            report(progress, 1000 * step + share, 1000 * steps,
                   f"{doing} {name} (step {step + 1} of {steps}): {how_far}")

        return callback

    keys = []
    for i, (name, seed) in enumerate(zip(DIGITS_PAIR, DIGITS_SEEDS)):
        digits_mlp_weights(seed, cached.store().root, progress=part(2 * i, name, "training"))
        extracting = part(2 * i + 1, name, "extracting")
        extracting(0, 1)
        acts = core.extract(cached.load_model(name), digits, layers="all", pooling="mean", store=cached.store(),
                            progress=extracting)
        keys.append(acts.key)
    cached.list_runs.clear()
    state.set_run_key(keys[0])
    return keys[0], keys[1]


# ----- maps ------------------------------------------------------------------------------------------
def compute_tsne(run_key: str, layer: str, progress: Progress | None = None) -> None:
    """The t-SNE map of one layer of a run, into the store (instant when stored); read it with cached.tsne_map."""
    projection_cached(cached.open_run(run_key), layer, "tsne", cached.store(), progress=progress)


# ----- logit lens ------------------------------------------------------------------------------------
def compute_lens(model: str, text: str, top_k: int, progress: Progress | None = None) -> None:
    """The logit lens of `model` on `text`, kept in the recipe context that the lens figures are built in."""
    lens_result(cached.recipe_context(), model, text, top_k, progress=progress)


# ----- compare ---------------------------------------------------------------------------------------
def compute_similarity(key_a: str, key_b: str, metric: str, params: Mapping[str, Any], *, rows: str = "inputs",
                       progress: Progress | None = None) -> SimilarityResult:
    """Every layer pair of two runs under `metric`, into the store (instant when stored; rows: "inputs"/"tokens")."""
    return similarity_of_runs(cached.store(), cached.open_run(key_a), cached.open_run(key_b), metric, params,
                              rows=rows, progress=progress)


def compute_calibration(key_a: str, key_b: str, metric: str, params: Mapping[str, Any], *, kind: str,
                        rows: str = "inputs", progress: Progress | None = None, **options: Any) -> Any:
    """The permutation null (kind "null") or a bootstrap interval (kind "bootstrap") the Compare heatmap reads,
    into the store (instant when stored); options: n_permutations, or n_boot, layers_a, layers_b."""
    return calibrated_of_runs(cached.store(), cached.open_run(key_a), cached.open_run(key_b), metric, params,
                              kind=kind, rows=rows, progress=progress, **options)


def compute_probe(run_key: str, column: str, *, control: str = "auto", progress: Progress | None = None) -> None:
    """The probe the Probes page reads (as cached.probe_result asks for it), into the store (instant when stored)."""
    probe_by_layer_cached(cached.open_run(run_key), column, cached.store(), task="auto", control=control, dropna=True,
                          drop_rare=True, progress=progress)


def compute_probe_curves(run_keys: Sequence[str], column: str, progress: Progress | None = None) -> None:
    """The probes Compare's depth curves read (as the recipe asks for them), into the store, one run after another."""
    for i, key in enumerate(run_keys):
        acts = cached.open_run(key)

        def step(done: int, total: int, what: str = "", i: int = i, model: str = acts.model_name) -> None:
            share = 1000 * done // max(total, 1)  # runs differ in layers: count thousandths of each run
            how_far = what.rsplit(": ", 1)[-1]  # "12/70 fits done", without the list of layers before it
            report(progress, 1000 * i + share, 1000 * len(run_keys), f"run {i + 1} of {len(run_keys)}, {model}: "
                   f"{how_far}")

        probe_by_layer_cached(acts, column, cached.store(), task="auto", control="auto", dropna=True,
                              drop_rare=True, progress=step)


# ----- geometry --------------------------------------------------------------------------------------
def compute_geometry(run_key: str, metrics: Sequence[str], options: Mapping[str, Any],
                     progress: Progress | None = None) -> GeometryResult:
    """Geometry of every layer of a run, into the store (instant when stored)."""
    return geometry_by_layer(cached.open_run(run_key), tuple(metrics), store=cached.store(), progress=progress,
                             **dict(options))


# ----- SAEs ------------------------------------------------------------------------------------------
def train_sae(run: Mapping[str, Any], layer: str, config: SAEConfig, progress=None) -> StoredSAE:
    """Train (or read back) an SAE on a run's layer; with a causal LM, the next-token loss is measured too.

    progress(step, total, metrics) receives the training curves' latest values.
    """
    acts = cached.open_run(run["key"])
    sae_core.check_tokens_run(acts, layer)
    config.check_for(acts.dim(layer))
    try:
        return sae_core.train_sae_on_run(acts, layer, config, store=cached.store(),
                                         model=cached_sae.causal_model_for(run), progress=progress)
    finally:
        cached_sae.list_saes.clear()


def import_sae(folder: str, run: Mapping[str, Any], layer: str, exclude_first_token: bool = True) -> StoredSAE:
    """Copy an SAELens folder into the workspace as an SAE of `layer` of `run`."""
    acts = cached.open_run(run["key"])
    entry = sae_core.import_saelens(folder.strip(), acts, layer, store=cached.store(),
                                    model=cached_sae.causal_model_for(run), exclude_first_token=exclude_first_token)
    cached_sae.list_saes.clear()
    return entry


def compute_stats(key: str, progress: Progress | None = None) -> FeatureStats:
    """One pass over the SAE's run: top examples, histograms, density, label association; into the store."""
    entry = cached_sae.open_sae(key)
    return ft.feature_stats_cached(entry, cached_sae.run_of(entry), cached.store(), progress=progress)


def compute_decoder_map(key: str, method: str, progress: Progress | None = None) -> None:
    """The map of an SAE's decoder directions (`method`: "pca" or "umap"), into the store (instant when stored)."""
    ft.decoder_map(cached_sae.open_sae(key), cached.store(), method=method, progress=progress)


def compute_matching(a: str, b: str, variant: str = ft.DEFAULT_MATCHING_VARIANT,
                     progress: Progress | None = None) -> FeatureMatching:
    """Pair the latents of SAEs `a` and `b` over their shared inputs (`variant`'s conventions); into the store."""
    ea, eb = cached_sae.open_sae(a), cached_sae.open_sae(b)
    return ft.match_features_cached(ea, eb, cached_sae.run_of(ea), cached_sae.run_of(eb), cached.store(),
                                    variant=variant, progress=progress)


# ----- checkpoint series -----------------------------------------------------------------------------
def make_bundled_series(progress: Progress | None = None) -> Series:
    """Train digits-mlp saving its checkpoints and extract each on demo:digits, linked as a series (instant when
    stored); progress counts checkpoints ("checkpoint i of n: ...")."""
    from core.models.bundled import DIGITS_SERIES_STEPS

    n = len(DIGITS_SERIES_STEPS)

    def steps(done: int, total: int, what: str = "") -> None:
        # training (first use only) fills the first of n + 1 parts of the bar, each checkpoint one more
        if what.startswith("checkpoint") or what.endswith("checkpoints extracted"):
            report(progress, 1000 * (done + 1), 1000 * (n + 1), what)
        else:
            report(progress, 1000 * done // max(total, 1), 1000 * (n + 1), f"training digits-mlp: {what}")

    series = extract_series(series_choice.BUNDLED_SERIES, series_choice.BUNDLED_DATA, store=cached.store(),
                            progress=steps)
    cached.list_runs.clear()
    cached.list_series.clear()
    return series


def compute_layer_metric(series: Series, metric: str, column: str | None = None,
                         progress: Progress | None = None) -> DynamicsResult:
    """A per-layer metric at every checkpoint of a series, into the store (instant when stored)."""
    return metric_by_checkpoint(cached.store(), series, metric, column=column, progress=progress)


def compute_to_final(series: Series, metric: str, progress: Progress | None = None) -> DynamicsResult:
    """Each layer's similarity to the final checkpoint's same layer across training, into the store."""
    return similarity_to_final(cached.store(), series, metric, progress=progress)


def compute_checkpoint_maps(series: Series, layer: str, progress: Progress | None = None) -> CheckpointMaps:
    """One layer's map at every checkpoint, aligned across training, into the store (instant when stored)."""
    return checkpoint_maps(cached.store(), series, layer, progress=progress)
