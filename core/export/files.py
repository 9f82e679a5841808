"""Where exports go: file-name stems, folders that stay inside the workspace's exports/, writable checks."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path, PurePosixPath

from core.errors import LayerscopeError

EXPORTS_DIR = "exports"  # the workspace's folder for exports


def slug(text: str, *, max_length: int = 80) -> str:
    """A file-name stem from any text: letters, digits, '.', '_' and '-' only."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._")[:max_length].strip("-._")
    return stem or "figure"


def safe_child(root: str | os.PathLike, name: str | os.PathLike) -> Path:
    """`root / name`, refusing names that leave `root`: '..', absolute paths, symlinks on the way.

    Raises LayerscopeError naming the offending part.
    """
    root = Path(root).expanduser().resolve()
    text = str(name).strip()
    if not text or "\x00" in text:
        raise LayerscopeError(f"folder name {str(name)!r} is empty or invalid; give a name like 'paper-figures'")
    relative = PurePosixPath(text.replace("\\", "/"))
    if relative.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise LayerscopeError(f"{text!r} is an absolute path; give a folder name inside {root}")
    if any(part == ".." for part in relative.parts):
        raise LayerscopeError(f"{text!r} leaves {root} ('..' is not allowed); give a folder name inside it")
    target = root
    for part in relative.parts:
        if part in ("", "."):
            continue
        target = target / part
        if target.is_symlink():
            raise LayerscopeError(f"{text!r} goes through a symbolic link ({target}); exports stay inside {root}")
    if not target.resolve().is_relative_to(root):
        raise LayerscopeError(f"{text!r} resolves outside {root}; give a folder name inside it")
    return target


def exports_root(store) -> Path:
    """The workspace's exports folder (created)."""
    return ensure_writable_dir(store.root / EXPORTS_DIR)


def export_folder(store, name: str) -> Path:
    """A user-chosen folder under the workspace's exports/ (created; names escaping it are refused)."""
    return ensure_writable_dir(safe_child(exports_root(store), name))


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check a file can be written there; LayerscopeError otherwise."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise LayerscopeError(f"{folder} exists and is not a folder; choose another output path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{uuid.uuid4().hex}.tmp"  # left by a kill: `verify` lists it
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise LayerscopeError(f"cannot write to {folder}: {err.strerror or err}; choose another output path") from None
    return folder
