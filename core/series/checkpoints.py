"""Where a series' checkpoints come from: a folder of checkpoint folders, hub revisions, or a bundled series.

`find_checkpoints(spec, revisions=...)` turns what the user gave into `Checkpoint`s in training
order, each something `core.load_model` takes. Everything that can be checked without loading
a model is checked here, before any extraction starts: an empty folder, subfolders that are not
models, a single checkpoint, a revision missing from the local Hugging Face cache.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import LayerscopeError
from core.progress import Progress

logger = logging.getLogger(__name__)

# a training step in a checkpoint's name: "checkpoint-1000", "step1000", "epoch_3", "global_step500"
STEP_IN_NAME = re.compile(r"(?:checkpoint|ckpt|global[-_ ]?step|step|epoch|iteration|iter)s?[-_ =]?(\d+)", re.IGNORECASE)
LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
# weights of other frameworks that a hub snapshot need not download
OTHER_FRAMEWORKS = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.tflite", "*.gguf"]


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a training, as `core.load_model` takes it."""

    label: str  # what people see: "checkpoint-1000", "step1000", "step 15"
    step: float | None  # the training step (or epoch) from its name, None where unknown
    source: str  # what core.load_model is given: a folder or a bundled name
    model_name: str | None = None  # the model name its run is stored under, when not the one load_model gives


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoints of one series and how the series is described."""

    model: str  # the series as given, made stable (a folder's absolute path, "org/name@step1,step2")
    name: str  # its default display name
    items: tuple[Checkpoint, ...]  # oldest first


def find_checkpoints(spec: str, *, revisions: Sequence[str] | None = None, workspace=None,
                     progress: Progress | None = None) -> Checkpoints:
    """The checkpoints named by `spec`, in training order (at least two).

    spec: a folder of checkpoint folders (ordered by the step number in their names, else by
        name; `revisions` picks and orders subfolders by name), a hub id with `revisions`
        (taken from the local Hugging Face cache, downloaded when the hub can be reached), or
        "digits-mlp:series" (trained into the workspace on first use; progress hears of it).
    """
    from core.models.bundled import DIGITS_SERIES

    spec = str(spec)
    revisions = _check_revisions(revisions)
    if revisions is not None and len(revisions) < 2:
        raise LayerscopeError(f"revisions={list(revisions)!r}: a checkpoint series needs at least 2 checkpoints")
    if spec == DIGITS_SERIES:
        if revisions is not None:
            raise LayerscopeError(f"revisions={list(revisions)!r}: {DIGITS_SERIES!r} has its own checkpoints; "
                                  "revisions go with a hub id or a folder of checkpoint folders")
        found = _digits_series(workspace, progress)
    elif Path(spec).expanduser().is_dir():
        found = _folder(Path(spec).expanduser().resolve(), spec, revisions)
    elif _looks_like_hub_id(spec):
        if revisions is None:
            raise LayerscopeError(f"model {spec!r} is a hub id: give the checkpoints as revisions, "
                                  "e.g. revisions=['step1000', 'step2000'] (--revisions step1000,step2000)")
        found = _hub(spec, revisions)
    else:
        raise LayerscopeError(
            f"model {spec!r} is not a checkpoint series: give a folder of checkpoint folders, a hub id with "
            f"revisions, or {DIGITS_SERIES!r}"
        )
    if len(found.items) < 2:
        labels = ", ".join(c.label for c in found.items) or "none"
        raise LayerscopeError(f"a checkpoint series needs at least 2 checkpoints; {spec!r} has "
                              f"{len(found.items)} ({labels})")
    return found


def _check_revisions(revisions: Sequence[str] | None) -> tuple[str, ...] | None:
    if revisions is None:
        return None
    if isinstance(revisions, str):
        revisions = [revisions]
    chosen = tuple(str(r).strip() for r in revisions)
    if any(not r for r in chosen):
        raise LayerscopeError(f"revisions={list(revisions)!r} must be non-empty names, e.g. ['step1000', 'step2000']")
    twice = sorted({r for r in chosen if chosen.count(r) > 1})
    if twice:
        raise LayerscopeError(f"revisions={list(revisions)!r} names {', '.join(map(repr, twice))} more than once")
    return chosen


def step_in_name(name: str) -> int | None:
    """The training step a checkpoint's name gives ("checkpoint-1000" -> 1000), else its last number."""
    match = STEP_IN_NAME.search(name) or LAST_NUMBER.search(name)
    return int(match.group(1)) if match else None


def _digits_series(workspace, progress: Progress | None) -> Checkpoints:
    from core.models.bundled import DIGITS_SERIES, DIGITS_SERIES_STEPS, digits_series_folder, digits_series_name

    digits_series_folder(workspace, progress=progress)
    items = tuple(Checkpoint(label=f"step {step}", step=float(step), source=digits_series_name(step))
                  for step in DIGITS_SERIES_STEPS)
    return Checkpoints(model=DIGITS_SERIES, name=DIGITS_SERIES, items=items)


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _folder(folder: Path, spec: str, revisions: tuple[str, ...] | None) -> Checkpoints:
    if _is_model_folder(folder):
        raise LayerscopeError(
            f"model {spec!r} is one model folder (it has config.json); a series needs a folder of checkpoint "
            "folders (e.g. checkpoint-1000/, checkpoint-2000/), a hub id with revisions, or digits-mlp:series"
        )
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise LayerscopeError(f"folder {spec!r} holds no checkpoint folders; put one model folder per checkpoint "
                              "in it (e.g. checkpoint-1000/, checkpoint-2000/)")
    models = [p for p in subfolders if _is_model_folder(p)]
    if not models:
        names = ", ".join(p.name for p in subfolders[:5]) + (", ..." if len(subfolders) > 5 else "")
        raise LayerscopeError(f"folder {spec!r}: none of its subfolders ({names}) is a model folder (config.json + "
                              "weights); a series needs one model folder per checkpoint")
    for other in sorted(set(subfolders) - set(models)):
        logger.info("%s is not a model folder (no config.json); left out of the series", other)
    if revisions is not None:
        by_name = {p.name: p for p in models}
        missing = [r for r in revisions if r not in by_name]
        if missing:
            raise LayerscopeError(f"revisions: {', '.join(map(repr, missing))} not in folder {spec!r}; it has "
                                  f"{', '.join(sorted(by_name))}")
        models = [by_name[r] for r in revisions]
        steps = [step_in_name(p.name) for p in models]
    else:
        steps = [step_in_name(p.name) for p in models]
        if all(s is not None for s in steps):  # by step number, so that step900 comes before step1000
            models, steps = zip(*sorted(zip(models, steps), key=lambda pair: (pair[1], pair[0].name)))
    items = tuple(Checkpoint(label=p.name, step=None if s is None else float(s), source=str(p))
                  for p, s in zip(models, steps, strict=True))
    return Checkpoints(model=str(folder), name=folder.name, items=items)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub(hub_id: str, revisions: tuple[str, ...]) -> Checkpoints:
    """Each revision's snapshot folder, from the local cache or (when the hub can be reached) downloaded."""
    steps = [step_in_name(rev) for rev in revisions]
    items = tuple(Checkpoint(label=rev, step=None if step is None else float(step),
                             source=str(_hub_snapshot(hub_id, rev)), model_name=f"{hub_id}@{rev}")
                  for rev, step in zip(revisions, steps, strict=True))
    return Checkpoints(model=f"{hub_id}@{','.join(revisions)}", name=hub_id, items=items)


def _hub_snapshot(hub_id: str, revision: str) -> Path:
    from huggingface_hub import snapshot_download

    from core.models import _hub_unreachable

    try:
        return Path(snapshot_download(hub_id, revision=revision, local_files_only=True))
    except (OSError, ValueError) as err:  # not cached (the hub client's errors are both): ask the hub
        logger.info("%s@%s is not in the local cache: %s", hub_id, revision, err)
    why = "HF_HUB_OFFLINE is set" if _offline() else _hub_unreachable()
    if why is not None:
        raise LayerscopeError(
            f"revision {revision!r} of {hub_id!r} is not in the local Hugging Face cache and {why}; download it "
            f"on a machine with network (huggingface-cli download {hub_id} --revision {revision}) or give a "
            "folder of checkpoint folders"
        )
    try:
        return Path(snapshot_download(hub_id, revision=revision, ignore_patterns=OTHER_FRAMEWORKS))
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LayerscopeError(f"revision {revision!r} of {hub_id!r} could not be downloaded: {first}") from err
