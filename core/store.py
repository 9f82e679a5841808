"""Content-addressed on-disk cache of activations and analysis results.

Layout of a workspace::

    <root>/runs/<key>/            complete activation entries (see core.activations)
    <root>/runs/<key>.partial/    an extraction in progress or interrupted
    <root>/results/<kind>/<key>/  analysis results: meta.json + one .npy per array
    <root>/models/                converted model weights (e.g. smollm2 as safetensors)

Keys are hashes of every input that changes a result plus `FORMAT_VERSION`.
Entries are written under a temporary name and renamed when complete (core.atomic),
so a reader never sees half an entry. Every complete entry lists the sha256 of its
files in meta.json; opening an entry checks them (once per process per file
version) and raises `DamagedEntryError` on a mismatch. A run may carry a name the
user gave it (`rename_run`): display only, kept in its meta.json, never part of its key.
Nothing is pickled: arrays are `.npy` read with `allow_pickle=False`, metadata is JSON. Results are
dataclasses stored through one codec (core.codec) by `Store.cached`/`lookup`/`save`.

Several processes may share a workspace (CLIs, dashboard sessions). Work on one key is
serialised by an exclusive flock on `<root>/locks/<name>.lock` (`Store.lock`): `cached`
looks up without it (hits stay lock-free), and on a miss takes the key's lock, looks up
again and only then computes, so two processes asking for the same result compute it
once; different keys never wait for each other. The kernel drops a flock when its
holder dies, and the lock is released on any exception. Lock files are kept, not
deleted after use: they are empty, one per key ever computed, and reused by the next
request for that key; unlinking one while it is held would let a second process lock
a fresh file of the same name (`lock` re-checks the file after locking, so a cleaner
that removes lock files cannot break the exclusion).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core import codec
from core.atomic import (  # noqa: F401  (the store's writers, importable from here too)
    atomic_dir,
    atomic_entry,
    atomic_file,
    checksum_files,
    file_sha256,
    json_default,
    read_json,
    verify_entry,
    write_bytes_atomic,
    write_json_atomic,
)
from core.diskspace import reporting_full_disk
from core.errors import DamagedEntryError, LayerscopeError

R = TypeVar("R")

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
WORKSPACE_ENV = "LAYERSCOPE_WORKSPACE"
RUN_NAME_MAX = 80  # characters of a run's name: one line in a picker
_SAFE_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")  # used as a lock file's name unchanged


def default_workspace() -> Path:
    """The workspace folder: $LAYERSCOPE_WORKSPACE, else ./workspace."""
    return Path(os.environ.get(WORKSPACE_ENV) or "workspace").expanduser().resolve()


def make_key(params: Mapping[str, Any]) -> str:
    """A stable 20-hex-digit key for a JSON-serialisable parameter mapping."""
    payload = {"format": FORMAT_VERSION, **params}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _complete_entries(parent: Path) -> list[dict[str, Any]]:
    """Metadata (+ `key`, `path`) of the complete entries in `parent`, newest first.

    Folders still being written (`.partial`, `.tmp`) or without a readable meta.json are left out.
    """
    entries = []
    if not parent.is_dir():
        return entries
    for folder in parent.iterdir():
        meta_path = folder / "meta.json"
        if folder.suffix in (".partial", ".tmp") or not meta_path.is_file():
            continue
        try:
            meta = read_json(meta_path)
        except (OSError, json.JSONDecodeError):
            logger.warning("skipping unreadable metadata %s", meta_path)
            continue
        entries.append({**meta, "key": folder.name, "path": str(folder)})
    entries.sort(key=lambda m: m.get("created", ""), reverse=True)
    return entries


def check_run_name(name: Any) -> str | None:
    """A run's display name, stripped: None or blank for no name; one line of at most RUN_NAME_MAX characters."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise LayerscopeError(f"name={name!r} must be text (or None to remove the run's name)")
    name = name.strip()
    if len(name) > RUN_NAME_MAX or any(ord(c) < 32 for c in name):
        raise LayerscopeError(f"name={name!r} must be one line of at most {RUN_NAME_MAX} characters")
    return name or None


class Store:
    """A workspace folder holding runs (activations) and analysis results."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root is not None else default_workspace()
        self.counts: Counter[tuple[str, str]] = Counter()  # (kind, "hit" | "miss") of cached()/lookup()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ----- folders -------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def run_dir(self, key: str) -> Path:
        return self.runs_dir / key

    def partial_dir(self, key: str) -> Path:
        return self.runs_dir / f"{key}.partial"

    def has_run(self, key: str) -> bool:
        return (self.run_dir(key) / "meta.json").is_file()

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    def lock_path(self, name: str) -> Path:
        """The lock file of `name`: the name itself when it is a safe file name, else a slug + its hash."""
        if not _SAFE_LOCK_NAME.fullmatch(name):
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60].strip("._") or "lock"
            name = f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
        return self.locks_dir / f"{name}.lock"

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive inter-process (and inter-thread) lock, e.g. while one extraction writes a key.

        Not re-entrant: taking the same name again inside the block waits forever.
        """
        path = self.lock_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            with open(path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    same_file = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same_file = False
                if same_file:
                    try:
                        yield
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)
                    return
                # the file was removed (e.g. by a cleanup) while we waited: lock the one now at `path`
                fcntl.flock(handle, fcntl.LOCK_UN)

    def result_lock(self, kind: str, params: Mapping[str, Any]) -> contextlib.AbstractContextManager[None]:
        """The lock held while the result (kind, params) is computed and saved."""
        return self.lock(f"result-{kind}-{make_key({'kind': kind, **params})}")

    # ----- runs ----------------------------------------------------------
    def open_run(self, key: str, *, verify: bool = True):
        """The complete run `key` as `Activations` (checksums verified)."""
        from core.activations import Activations

        folder = self.run_dir(key)
        if not (folder / "meta.json").is_file():
            raise LayerscopeError(
                f"run {key!r} is not in the workspace {self.root}; "
                "list the runs with `python -m core ls`"
            )
        meta = read_json(folder / "meta.json")
        if verify:
            verify_entry(folder, meta.get("checksums", {}))
        return Activations(folder, meta)

    def list_runs(self) -> list[dict[str, Any]]:
        """Metadata of every complete run, newest first, with `key`, `path`, `bytes`."""
        runs = _complete_entries(self.runs_dir)
        for run in runs:
            run["bytes"] = sum(p.stat().st_size for p in Path(run["path"]).rglob("*") if p.is_file())
        return runs

    def rename_run(self, key: str, name: str | None) -> dict[str, Any]:
        """Name run `key` for display (None or blank: remove its name); returns its metadata.

        The name lives in the run's meta.json (not covered by its checksums), so the key,
        the arrays and every result keyed by the run stay as they are.
        """
        name = check_run_name(name)
        meta_path = self.run_dir(key) / "meta.json"
        with self.lock(key):  # an extraction of the same key holds it while it writes meta.json
            if not meta_path.is_file():
                raise LayerscopeError(
                    f"run {key!r} is not in the workspace {self.root}; list the runs with `python -m core ls`"
                )
            meta = read_json(meta_path)
            if name:
                meta["name"] = name
            else:
                meta.pop("name", None)
            write_json_atomic(meta_path, meta)
        return meta

    def delete_run(self, key: str) -> None:
        for folder in (self.run_dir(key), self.partial_dir(key)):
            if folder.exists():
                shutil.rmtree(folder)

    def quarantine(self, folder: Path) -> Path:
        """Move a damaged entry aside (kept for inspection, invisible to readers)."""
        target = self.root / "damaged" / f"{folder.name}.{int(time.time())}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, target)
        return target

    # ----- results -------------------------------------------------------
    def result_dir(self, kind: str, key: str) -> Path:
        return self.root / "results" / kind / key

    def load_result(self, kind: str, params: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict] | None:
        """Arrays and metadata stored for (kind, params), or None if absent or damaged."""
        folder = self.result_dir(kind, make_key({"kind": kind, **params}))
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            return None
        meta = read_json(meta_path)
        try:
            verify_entry(folder, meta.get("checksums", {}))
        except DamagedEntryError as err:
            logger.warning("%s; recomputing", err)
            with contextlib.suppress(FileNotFoundError):  # another process saw it first and moved it
                self.quarantine(folder)
            return None
        try:
            arrays = {
                name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                for name in meta.get("arrays", [])
            }
        except ValueError as err:  # Python objects (a pickle) or a malformed header: never unpickled
            logger.warning("store entry %s holds an array that is not plain numbers (%s); recomputing", folder.name, err)
            with contextlib.suppress(FileNotFoundError):
                self.quarantine(folder)
            return None
        return arrays, meta

    def save_result(
        self,
        kind: str,
        params: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write arrays + metadata atomically; returns the entry folder."""
        key = make_key({"kind": kind, **params})
        final = self.result_dir(kind, key)
        full_meta = {
            "kind": kind,
            "params": dict(params),
            "arrays": list(arrays),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **(meta or {}),
        }
        needed = sum(np.asarray(a).nbytes for a in arrays.values())
        with reporting_full_disk(self.root, f"writing the {kind} result", needed, place="the workspace"), \
                atomic_entry(final, full_meta) as tmp:
            for name, array in arrays.items():
                array = np.asarray(array)
                if array.dtype == object:
                    raise TypeError(f"result array {name!r} has dtype object; store numbers or strings")
                np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        return final

    def cached_result(
        self,
        kind: str,
        params: Mapping[str, Any],
        compute: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]],
    ) -> tuple[dict[str, np.ndarray], dict]:
        """Load (kind, params) from the store, or compute, save and return it.

        `compute()` returns (arrays, extra metadata). `params` must hold every
        input that changes the result (run key, layer, method, seed, ...).
        """
        hit = self.load_result(kind, params)
        if hit is not None:
            return hit
        with self.result_lock(kind, params):
            hit = self.load_result(kind, params)  # another process may have computed it while we waited
            if hit is not None:
                return hit
            arrays, meta = compute()
            self.save_result(kind, params, arrays, meta)
        loaded = self.load_result(kind, params)
        assert loaded is not None
        return loaded

    # ----- typed results (one codec, one hit/miss path) ----------------------------------
    def lookup(self, kind: str, params: Mapping[str, Any], result_type: type[R]) -> R | None:
        """The stored `result_type` for (kind, params), or None when absent, damaged or unreadable."""
        result = self._read(kind, params, result_type)
        self.counts[kind, "miss" if result is None else "hit"] += 1
        return result

    def _read(self, kind: str, params: Mapping[str, Any], result_type: type[R]) -> R | None:
        """`lookup` without counting."""
        hit = self.load_result(kind, params)
        if hit is None:
            return None
        try:
            return codec.decode(result_type, *hit)
        except codec.CodecError as err:
            logger.warning("%s in %s; recomputing", err, self.result_dir(kind, make_key({"kind": kind, **params})))
            return None

    def save(self, kind: str, params: Mapping[str, Any], result: Any) -> Path:
        """Store a result dataclass under (kind, params) through the codec."""
        arrays, meta = codec.encode(result)
        return self.save_result(kind, params, arrays, meta)

    def cached(self, kind: str, params: Mapping[str, Any], compute: Callable[[], R], result_type: type[R]) -> R:
        """The stored result for (kind, params), or `compute()` saved and returned.

        `params` must hold every input that changes the result (run key, layer, method,
        seed, a version); `compute()` returns a `result_type` dataclass. Processes (or threads)
        asking for the same result at once compute it once: the others wait on its lock and read it.
        """
        stored = self._read(kind, params, result_type)  # without the lock: a hit never waits
        if stored is None:
            with self.result_lock(kind, params):
                stored = self._read(kind, params, result_type)  # computed by another process while we waited?
                if stored is None:
                    self.counts[kind, "miss"] += 1
                    result = compute()
                    self.save(kind, params, result)
                    return result
        self.counts[kind, "hit"] += 1
        return stored

    # ----- entries that are folders of files (e.g. SAEs) ----------------------------------
    def entry_dir(self, kind: str, key: str) -> Path:
        return self.result_dir(kind, key)

    @contextlib.contextmanager
    def write_entry(self, kind: str, key: str, meta: Mapping[str, Any]) -> Iterator[Path]:
        """Yield a temporary folder for an entry's files; renamed to `entry_dir(kind, key)` when complete."""
        full = {"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **meta}
        with reporting_full_disk(self.root, f"writing the {kind} entry {key}", place="the workspace"), \
                atomic_entry(self.entry_dir(kind, key), full) as tmp:
            yield tmp

    def list_entries(self, kind: str) -> list[dict[str, Any]]:
        """Metadata of every complete entry of `kind` with `key` and `path`, newest first."""
        return _complete_entries(self.root / "results" / kind)

    def open_entry(self, kind: str, key: str) -> tuple[Path, dict[str, Any]]:
        """The folder and metadata of a complete entry (checksums verified)."""
        folder = self.entry_dir(kind, key)
        if not (folder / "meta.json").is_file():
            raise LayerscopeError(f"{kind} {key!r} is not in the workspace {self.root}")
        meta = read_json(folder / "meta.json")
        verify_entry(folder, meta.get("checksums", {}))
        return folder, meta

    def delete_entry(self, kind: str, key: str) -> None:
        folder = self.entry_dir(kind, key)
        if folder.exists():
            shutil.rmtree(folder)
