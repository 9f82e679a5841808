"""What several analyses ask of a run: its layers, its inputs, its untrained twin.

A run is an `Activations` or its metadata mapping (as listed by `Store.list_runs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import LayerscopeError
from core.progress import Progress

if TYPE_CHECKING:
    from core.activations import Activations
    from core.data import Dataset
    from core.store import Store

TWIN_SEED = 0  # seed of the re-initialised weights of a run's untrained twin


def _meta(run: Activations | Mapping[str, Any]) -> Mapping[str, Any]:
    return run if isinstance(run, Mapping) else run.meta


def _key(run: Activations | Mapping[str, Any]) -> str:
    return str(run["key"]) if isinstance(run, Mapping) else run.key


# ----- layers ----------------------------------------------------------------------------
def check_layer(acts: Activations, layer: Any) -> str:
    """`layer` if the run holds it."""
    if layer not in acts.layer_names:
        raise LayerscopeError(f"layer {layer!r} is not in run {acts.key}; it has {', '.join(acts.layer_names)}")
    return layer


def check_layers(acts: Activations, layers: str | Iterable[str] | None, *, name: str = "layers") -> tuple[str, ...]:
    """The run's layers named by `layers` ("all" or None: every layer), in the order given."""
    if layers is None or layers == "all":
        return tuple(acts.layer_names)
    chosen = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [layer for layer in chosen if layer not in acts.layer_names]
    if unknown or not chosen:
        raise LayerscopeError(
            f"{name}={list(chosen)!r}: {', '.join(map(repr, unknown)) or 'none given'} not in run {acts.key}; "
            f"it has {', '.join(acts.layer_names)}"
        )
    return chosen


# ----- inputs ----------------------------------------------------------------------------
def check_same_inputs(acts_a: Activations, acts_b: Activations, *, purpose: str) -> None:
    """Raise unless both runs saw the same inputs in the same order (same dataset fingerprint and size).

    purpose: why it matters, ending the message, e.g. "similarity needs rows aligned by input".
    """
    fa = acts_a.meta.get("dataset", {}).get("fingerprint")
    fb = acts_b.meta.get("dataset", {}).get("fingerprint")
    for acts, fp in ((acts_a, fa), (acts_b, fb)):
        if not fp:
            raise LayerscopeError(
                f"run {acts.key} has no dataset fingerprint, so Layerscope cannot check that both runs saw the "
                "same inputs in the same order; extract it again"
            )
    if fa != fb or acts_a.n_inputs != acts_b.n_inputs:
        raise LayerscopeError(
            f"runs {acts_a.key} ({acts_a.model_name} on {acts_a.dataset_name!r}: {acts_a.n_inputs} inputs, "
            f"dataset fingerprint {fa}) and {acts_b.key} ({acts_b.model_name} on {acts_b.dataset_name!r}: "
            f"{acts_b.n_inputs} inputs, fingerprint {fb}) did not see the same inputs in the same order; "
            f"{purpose}: extract both models from the same dataset (same rows, limit and order)"
        )


def run_dataset(acts: Activations) -> Dataset:
    """The run's own text inputs and labels as a Dataset (same fingerprint, so the same store keys)."""
    from core.data import Dataset

    info = acts.meta["dataset"]
    if info.get("modality") != "text" or acts.meta.get("has_images"):
        raise LayerscopeError(
            f"run {acts.key} holds {info.get('modality')} inputs; its dataset can be rebuilt from the run "
            "for text runs only: load the dataset again with core.load_dataset"
        )
    return Dataset(
        name=info["name"],
        modality="text",
        table=acts.table,
        text_column=info["text_column"],
        label_columns=tuple(info.get("label_columns", ())),
        fingerprint=info["fingerprint"],
        description=info.get("description", ""),
    )


# ----- the untrained twin ------------------------------------------------------------------
def is_untrained(run: Activations | Mapping[str, Any]) -> bool:
    """A run extracted from re-initialised weights (its model cannot be reloaded by name)."""
    return str(_meta(run)["model"].get("weights", "")).startswith("reinit")


def twin_name(run: Activations | Mapping[str, Any], seed: int = TWIN_SEED) -> str:
    """The model name a run's untrained twin is stored under."""
    return f"{_meta(run)['model']['name']} (untrained, seed {seed})"


def find_twin(
    run: Activations | Mapping[str, Any], runs: Sequence[Mapping[str, Any]], seed: int = TWIN_SEED
) -> dict[str, Any] | None:
    """A stored run of the re-initialised twin on the same inputs, layers and pooling, if any."""
    meta = _meta(run)
    for other in runs:
        if (
            other["model"]["name"] == twin_name(meta, seed)
            and other["dataset"]["fingerprint"] == meta["dataset"]["fingerprint"]
            and list(other["layers"]) == list(meta["layers"])
            and other["pooling"] == meta["pooling"]
            and other.get("max_length") == meta.get("max_length")
        ):
            return dict(other)
    return None


def extract_twin(
    run: Activations | Mapping[str, Any],
    store: Store,
    *,
    load_model: Callable[..., Any] | None = None,
    progress: Progress | None = None,
    seed: int = TWIN_SEED,
) -> Activations:
    """Extract the run's inputs through the same architecture with re-initialised weights (seeded).

    load_model: `core.load_model` or a cached wrapper of it (called with `reinit=True, seed=seed`).
    """
    from core.extract import extract
    from core.models import load_model as core_load_model

    meta = _meta(run)
    if is_untrained(meta):
        raise LayerscopeError(f"run {_key(run)} is already from an untrained model; pick the trained run")
    acts = store.open_run(_key(run)) if isinstance(run, Mapping) else run
    model = (load_model or core_load_model)(meta["model"]["name"], reinit=True, seed=seed)
    return extract(
        model,
        run_dataset(acts),
        layers=list(meta["layers"]),
        pooling=meta["pooling"],
        max_length=meta.get("max_length"),
        store=store,
        progress=progress,
    )
