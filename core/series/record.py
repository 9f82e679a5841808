"""A checkpoint series: one run per checkpoint of a training, on the same inputs, in training order.

A series is a store entry of kind "series" holding no arrays, only which runs it links: its
checkpoints' labels ("step1000", "epoch 3", a folder's name), their training step where known
(for the x axis of dynamics figures) and the key of each checkpoint's run. Every run of a
series has the same dataset fingerprint, layers and pooling (checked when it is saved), so
analyses can compare a layer across checkpoints row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import LayerscopeError
from core.store import Store, make_key

KIND = "series"
SERIES_VERSION = 1


@dataclass(frozen=True)
class Series:
    """The runs of one training's checkpoints, oldest first."""

    key: str
    name: str  # what people see: the model spec the series came from, or the user's name for it
    model: str  # the series as given (a folder of checkpoints, a hub id with revisions, a bundled series)
    dataset: str  # the dataset spec of every run
    pooling: str
    layers: tuple[str, ...]  # module paths, the same in every run
    steps: tuple[str, ...]  # checkpoint labels, in training order
    step_values: tuple[float | None, ...]  # the training step (or epoch) of each checkpoint, None where unknown
    run_keys: tuple[str, ...]  # the run of each checkpoint, in the same order

    def __len__(self) -> int:
        return len(self.run_keys)

    @property
    def final_key(self) -> str:
        """The last checkpoint's run: what the others are compared with."""
        return self.run_keys[-1]

    def as_meta(self) -> dict[str, Any]:
        return {"version": SERIES_VERSION, "name": self.name, "model": self.model, "dataset": self.dataset,
                "pooling": self.pooling, "layers": list(self.layers), "steps": list(self.steps),
                "step_values": list(self.step_values), "run_keys": list(self.run_keys)}

    @classmethod
    def from_meta(cls, key: str, meta: dict[str, Any]) -> Series:
        return cls(key=key, name=meta["name"], model=meta["model"], dataset=meta["dataset"],
                   pooling=meta["pooling"], layers=tuple(meta["layers"]), steps=tuple(meta["steps"]),
                   step_values=tuple(meta["step_values"]), run_keys=tuple(meta["run_keys"]))


def save_series(store: Store, *, name: str, model: str, steps: Sequence[str], run_keys: Sequence[str],
                step_values: Sequence[float | None] | None = None) -> Series:
    """Link stored runs (one per checkpoint, in training order) as a series; returns it.

    Refused unless there are at least two checkpoints, as many labels as runs, and every run
    saw the same inputs with the same layers and pooling.
    """
    steps, run_keys = tuple(map(str, steps)), tuple(map(str, run_keys))
    values = tuple(step_values) if step_values is not None else (None,) * len(steps)
    if len(run_keys) < 2:
        raise LayerscopeError(f"a checkpoint series needs at least 2 checkpoints; {model!r} has {len(run_keys)}")
    if not (len(steps) == len(run_keys) == len(values)):
        raise LayerscopeError(f"{len(steps)} checkpoint labels and {len(values)} steps for {len(run_keys)} runs")
    metas = [store.open_run(key, verify=False).meta for key in run_keys]
    first = metas[0]
    for label, meta in zip(steps, metas, strict=True):
        for field, what in (("pooling", "pooling"), ("layers", "layers")):
            if meta[field] != first[field]:
                raise LayerscopeError(f"checkpoint {label!r} was extracted with other {what} ({meta[field]!r}) "
                                      f"than {steps[0]!r} ({first[field]!r}); a series needs the same everywhere")
        if meta["dataset"].get("fingerprint") != first["dataset"].get("fingerprint"):
            raise LayerscopeError(f"checkpoint {label!r} saw other inputs than {steps[0]!r}; "
                                  "a series needs the same dataset in every run")
    key = make_key({"kind": KIND, "model": model, "runs": list(run_keys), "steps": list(steps)})
    series = Series(key=key, name=name, model=model, dataset=str(first["dataset"]["name"]),
                    pooling=str(first["pooling"]), layers=tuple(first["layers"]), steps=steps,
                    step_values=tuple(None if v is None else float(v) for v in values), run_keys=run_keys)
    if not store.entry_dir(KIND, key).is_dir():
        with store.write_entry(KIND, key, series.as_meta()):
            pass
    return series


def list_series(store: Store) -> list[Series]:
    """Every complete series in the workspace, newest first."""
    return [Series.from_meta(m["key"], m) for m in store.list_entries(KIND)]


def open_series(store: Store, key: str) -> Series:
    """The series stored under `key`."""
    _, meta = store.open_entry(KIND, key)
    return Series.from_meta(key, meta)
