"""Directions kept in the workspace (`results/direction/<key>/`) and exported as safetensors files.

A direction's key is made from what it is (source, provenance, layer, model, version),
not from its display name: storing it again under another name replaces the entry.
An export holds the vector under "direction" and, as string metadata (safetensors
metadata maps str -> str), the name, layer, source and scale as text and the model
and provenance as JSON.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from core import codec
from core.errors import DamagedEntryError, LayerscopeError
from core.export.files import ensure_writable_dir, safe_child
from core.interventions.records import DIRECTION_VERSION, Direction
from core.store import Store, make_key

DIRECTION_KIND = "direction"  # entry kind in the store
TENSOR_NAME = "direction"  # the vector's name in an exported safetensors file


def direction_params(direction: Direction) -> dict[str, Any]:
    """What identifies a direction: its store key is made from this."""
    return {"source": direction.source, "provenance": direction.provenance, "layer": direction.layer,
            "model": direction.model, "version": DIRECTION_VERSION}


def direction_key(direction: Direction) -> str:
    """The store key of `direction`."""
    return make_key({"kind": DIRECTION_KIND, **direction_params(direction)})


def save_direction(store: Store, direction: Direction) -> str:
    """Store `direction` (atomically, through the codec); returns its key."""
    store.save(DIRECTION_KIND, direction_params(direction), direction)
    return direction_key(direction)


def load_direction(store: Store, key: str) -> Direction:
    """The stored direction `key` (checksums verified)."""
    folder = store.result_dir(DIRECTION_KIND, str(key))
    if not (folder / "meta.json").is_file():
        known = ", ".join(entry["key"] for entry in store.list_entries(DIRECTION_KIND)[:10]) or "none yet"
        raise LayerscopeError(f"direction {key!r} is not in the workspace {store.root}; stored: {known}")
    try:
        _, meta = store.open_entry(DIRECTION_KIND, str(key))
        arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in meta.get("arrays", [])}
        return codec.decode(Direction, arrays, meta)
    except (DamagedEntryError, codec.CodecError) as err:
        raise LayerscopeError(f"direction {key!r} is damaged ({err}); make it again") from None


def list_directions(store: Store) -> list[tuple[str, Direction]]:
    """(key, Direction) of every complete stored direction, newest first (damaged ones left out)."""
    found = []
    for entry in store.list_entries(DIRECTION_KIND):
        try:
            found.append((entry["key"], load_direction(store, entry["key"])))
        except LayerscopeError:
            continue
    return found


def direction_metadata(direction: Direction) -> dict[str, str]:
    """The safetensors metadata of an export: every value a string (JSON for the mappings)."""
    return {
        "name": direction.name,
        "layer": direction.layer,
        "source": direction.source,
        "scale": repr(float(direction.scale)),
        "model": json.dumps(direction.model, sort_keys=True),
        "provenance": json.dumps(direction.provenance, sort_keys=True, default=str),
        "version": str(DIRECTION_VERSION),
        "format": "layerscope direction: unit vector; steering adds alpha * scale * direction",
    }


def export_direction(direction: Direction, path: str | os.PathLike, *, folder: str | os.PathLike | None = None) -> Path:
    """Write `direction` as a safetensors file; returns its path.

    path: the file (".safetensors" is added when missing); with `folder`, a name inside it
    that may not leave it ('..', absolute paths and symbolic links are refused).
    """
    from safetensors.numpy import save_file

    target = safe_child(folder, path) if folder is not None else Path(path).expanduser()
    if target.suffix != ".safetensors":
        target = target.with_name(target.name + ".safetensors")
    if target.is_dir():
        raise LayerscopeError(f"{target} is a folder; give a file name ending in .safetensors")
    ensure_writable_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:  # written beside the target, then renamed: no half-written export ever carries the final name
        save_file({TENSOR_NAME: np.ascontiguousarray(direction.vector, dtype=np.float32)}, str(tmp),
                  metadata=direction_metadata(direction))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
