"""Extract every checkpoint of a training on the same inputs and link the runs as a series.

    extract_series("digits-mlp:series", "demo:digits", store=store)
    extract_series("out/", "demo:sentences", store=store)              # out/checkpoint-1000/, ...
    extract_series("EleutherAI/pythia-70m", "demo:sentences", revisions=["step1000", "step2000"], store=store)

Each checkpoint is an ordinary run (its own store key, so a rerun finds it and skips it); the
series is saved only once every run is complete. Checkpoints are loaded one at a time, so
memory holds one model whatever the length of the series.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from core.data import Dataset, load_dataset
from core.errors import LayerscopeError
from core.extract import POOLINGS, extract
from core.progress import Progress, report
from core.series.checkpoints import Checkpoint, find_checkpoints
from core.series.checks import Architecture, SharedTokenizer, check_same_tokenizer, config_architecture
from core.series.record import Series, save_series
from core.store import Store, check_run_name
from core.validation import check_choice, check_int

logger = logging.getLogger(__name__)


def extract_series(
    spec: str,
    data: Dataset | str,
    *,
    layers: str | Sequence[str] = "all",
    pooling: str = "mean",
    store: Store,
    progress: Progress | None = None,
    revisions: Sequence[str] | None = None,
    name: str | None = None,
    device: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
) -> Series:
    """The series of `spec`'s checkpoints on `data`, from the store or extracted now.

    spec: a folder of checkpoint folders, a hub id with `revisions`, or "digits-mlp:series"
        (see core.series.checkpoints.find_checkpoints).
    layers: "all" or module paths, resolved on the first checkpoint and the same for every one.
    pooling, device, batch_size, max_length: as in core.extract.extract; max_length defaults to
        the first checkpoint's.
    name: the series' display name (default: the folder's name, the hub id, the bundled name).
    progress: called as progress(checkpoints_done, n_checkpoints, "checkpoint i of n: <label>: <step>").
    """
    pooling = check_choice("pooling", pooling, POOLINGS)
    batch_size = check_int("batch_size", batch_size, low=1)
    if max_length is not None:
        max_length = check_int("max_length", max_length, low=1)
    name = check_run_name(name)
    dataset = load_dataset(data) if isinstance(data, str) else data
    found = find_checkpoints(spec, revisions=revisions, workspace=store.root, progress=progress)
    n = len(found.items)
    _check_configs(found.items)
    first: _First | None = None
    run_keys = []
    for i, checkpoint in enumerate(found.items):
        where = f"checkpoint {i + 1} of {n}: {checkpoint.label}"
        report(progress, i, n, where)
        model = _load(checkpoint, device, store)
        if first is None:
            first = _First.of(checkpoint, model, layers, max_length, dataset)
        else:
            first.check(checkpoint, model, dataset)
        acts = extract(model, dataset, layers=first.layers, pooling=pooling, batch_size=batch_size,
                       max_length=first.max_length, store=store, progress=_within(progress, i, n, where))
        run_keys.append(acts.key)
        del model  # one checkpoint in memory at a time
    report(progress, n, n, f"{n} checkpoints extracted")
    return save_series(store, name=name or found.name, model=found.model, steps=[c.label for c in found.items],
                       run_keys=run_keys, step_values=[c.step for c in found.items])


def _check_configs(checkpoints: Sequence[Checkpoint]) -> None:
    """Refuse checkpoints of different networks from their config.json alone, before extracting any."""
    from pathlib import Path

    described = [config_architecture(c.label, Path(c.source)) for c in checkpoints]
    known = [a for a in described if a is not None]
    for architecture in known[1:]:
        known[0].check_same(architecture)


def _load(checkpoint: Checkpoint, device: str | None, store: Store):
    from core.models import load_model

    model = load_model(checkpoint.source, device=device, workspace=store.root)
    if checkpoint.model_name is not None:
        model.name = checkpoint.model_name  # a hub revision: say which, not the cache folder it sits in
    return model


class _First:
    """What the first checkpoint fixes for the others: architecture, layers, max_length, tokenisation."""

    def __init__(self, label: str, architecture: Architecture, layers: list[str], max_length: int,
                 tokenizer: SharedTokenizer | None) -> None:
        self.label = label
        self.architecture = architecture
        self.layers = layers
        self.max_length = max_length
        self.tokenizer = tokenizer

    @classmethod
    def of(cls, checkpoint: Checkpoint, model, layers, max_length: int | None, dataset: Dataset) -> _First:
        tokenizer = None
        if model.tokenizer is not None and model.modality == "text" and model.modality == dataset.modality:
            tokenizer = SharedTokenizer(model.tokenizer)
            model.tokenizer = tokenizer
        return cls(checkpoint.label, Architecture.of(checkpoint.label, model), model.resolve_layers(layers),
                   int(max_length or model.max_length), tokenizer)

    def check(self, checkpoint: Checkpoint, model, dataset: Dataset) -> None:
        """Refuse a checkpoint of another network; hand it the first checkpoint's tokenisation."""
        self.architecture.check_same(Architecture.of(checkpoint.label, model))
        if self.tokenizer is None:
            return
        if model.tokenizer is None:
            raise LayerscopeError(f"checkpoint {checkpoint.label!r} has no tokenizer and {self.label!r} has one; "
                                  "a series holds checkpoints of one network")
        check_same_tokenizer(self.label, self.tokenizer.tokenizer, checkpoint.label, model.tokenizer, dataset.texts)
        model.tokenizer = self.tokenizer


def _within(progress: Progress | None, i: int, n: int, where: str) -> Progress | None:
    """One checkpoint's extraction progress, told as part of the whole series."""
    if progress is None:
        return None
    return lambda done, total, what: progress(i, n, f"{where}: {what}")
