"""How a dataset is named for people and keyed for the store.

A dataset is shown by a short name (a bundled set's name, or the user's own file or
folder name) and keyed by its content (the fingerprint): the same bytes, uploaded or
given by path, are one dataset in the store. Uploads are kept as
`<folder>/<sha256 prefix>/<the user's file name>`, so the content decides where they
live and the file keeps the name the user gave it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePath, PureWindowsPath

from core.atomic import write_bytes_atomic
from core.errors import LayerscopeError

DEMO_PREFIX = "demo:"
UPLOADS_DIR = "uploads"  # the workspace's folder for uploaded files
UPLOAD_DIGEST_LENGTH = 16  # hex digits of the sha256 that name an upload's folder
UPLOAD_LIMIT_MB = 200  # the largest upload kept (the server's maxUploadSize in .streamlit/config.toml)


def is_demo(spec: str) -> bool:
    """A bundled dataset name such as "demo:sentences"."""
    return str(spec).startswith(DEMO_PREFIX)


def display_name(spec: str | os.PathLike) -> str:
    """The name a dataset is shown by: a bundled set's name, else its file or folder name.

    "demo:cities" -> "demo:cities"; "/data/uploads/3fa9.../my_reviews.csv" -> "my_reviews.csv".
    """
    text = str(spec)
    if is_demo(text):
        return text
    return PurePath(text).name or text


def dataset_identity(name: str, fingerprint: str) -> dict[str, str]:
    """What a store key takes from a dataset: its content, never where it was read from.

    A bundled set's name stays in the key too, so that runs already stored under it keep
    being found.
    """
    if is_demo(name):
        return {"name": name, "fingerprint": fingerprint}
    return {"fingerprint": fingerprint}


def upload_file_name(name: str, *, suffix: str = "") -> str:
    """The user's file name without any folder part and without characters a file system refuses."""
    # browsers send a bare name, but a name typed elsewhere may carry either kind of separator
    base = PureWindowsPath(PurePath(str(name)).name).name
    base = "".join("_" if ord(c) < 32 or c in '/\\:*?"<>|' else c for c in base).strip().strip(".")
    return base or f"upload{suffix}"


def save_upload(folder: str | os.PathLike, name: str, data: bytes, *, limit_mb: float = UPLOAD_LIMIT_MB) -> Path:
    """Keep uploaded bytes as `<folder>/<sha256 prefix>/<name>`; returns the file's path.

    The same bytes under the same name are written once; under another name they are kept
    beside it, so each upload keeps the name it was given. Uploads over `limit_mb` MiB are refused.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LayerscopeError(f"an upload must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > limit_mb * 2**20:
        raise LayerscopeError(f"upload {upload_file_name(name)!r} is {len(data) / 2**20:.1f} MB; the upload limit is "
                              f"{limit_mb:g} MB (give its path instead)")
    file_name = upload_file_name(name, suffix=PurePath(str(name)).suffix.lower())
    digest = hashlib.sha256(data).hexdigest()[:UPLOAD_DIGEST_LENGTH]
    path = Path(folder).expanduser() / digest / file_name
    if not (path.is_file() and path.stat().st_size == len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
    return path
