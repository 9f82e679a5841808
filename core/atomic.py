"""Writing and checking store files: nothing half-written is ever read as complete.

Every file is written to a temporary name beside its target and renamed over it
(`atomic_file`); a folder entry is filled under a temporary name, gets a meta.json
listing the sha256 of each of its files, and is renamed into place (`atomic_entry`).
Reading an entry checks those checksums once per process per file version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DamagedEntryError

_HASH_CHUNK = 1 << 24

# (path, size, mtime_ns) of files whose checksum was verified in this process
_verified: set[tuple[str, int, int]] = set()


def json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, tuple, set)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"cannot put {type(value).__name__} into a store key")


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` except meta.json, by relative path."""
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "meta.json"
    }


def verify_entry(folder: Path, checksums: Mapping[str, str]) -> None:
    """Raise DamagedEntryError if any listed file is missing or has changed."""
    for rel, expected in checksums.items():
        path = folder / rel
        if not path.is_file():
            raise DamagedEntryError(f"store entry {folder.name} is damaged: {rel} is missing")
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns)
        if stamp in _verified:
            continue
        if file_sha256(path) != expected:
            raise DamagedEntryError(
                f"store entry {folder.name} is damaged: checksum of {rel} does not match"
            )
        _verified.add(stamp)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write a file to; renamed over `path` when the block
    ends without an error, removed otherwise. A reader sees the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through `atomic_file`, flushed to disk before the rename."""
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename over it."""
    write_bytes_atomic(path, json.dumps(data, indent=1, default=json_default).encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; when the block ends without an error it is
    renamed to `final` (replacing an older folder), on an error it is removed."""
    final = Path(final)
    tmp = final.with_name(f"{final.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            # the older folder is renamed aside, not deleted in place: a kill now leaves it whole under a
            # temporary name (an orphan `verify` lists), never half-deleted under its final name
            old = final.with_name(f"{final.name}.{uuid.uuid4().hex}.tmp")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_entry(final: Path, meta: Mapping[str, Any]) -> Iterator[Path]:
    """Yield a temporary folder beside `final` to write an entry's files into.

    When the block ends without an error, meta.json (with the sha256 of every file) is
    written and the folder renamed to `final`, replacing an older entry; on an error
    the temporary folder is removed. A reader never sees half an entry.
    """
    with atomic_dir(final) as tmp:
        yield tmp
        full = {**meta, "checksums": checksum_files(tmp)}
        write_json_atomic(tmp / "meta.json", full)
