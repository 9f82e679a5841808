"""A full disk as one message a user can act on: where, how much was needed, how much is free.

Writes into the workspace (an extraction, a result, an SAE) or an export folder run inside
`reporting_full_disk(folder, what, needed)`: an OSError ENOSPC (or EDQUOT, a full quota)
raised there becomes a `DiskFullError` naming the folder, the bytes the write needed and the
bytes free (`shutil.disk_usage`). The writers are atomic, so what was cut short is a
temporary file or an interrupted `.partial` run: nothing half-written looks complete, and
the same command run again once space is freed completes (an extraction resumes).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from core.errors import LayerscopeError

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(LayerscopeError):
    """A write ran out of space (or quota) in the workspace or an export folder."""


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` is an OSError saying the disk (or quota) is full."""
    return isinstance(err, OSError) and err.errno in FULL_DISK_ERRNOS


def human_bytes(n: float) -> str:
    """`n` bytes as B, kB, MB, GB or TB (powers of 1000, three significant digits)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} TB"


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes free for writing at `folder` (its nearest existing parent), or None if that cannot be read."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def unallocated_bytes(folder: str | os.PathLike) -> int:
    """Bytes the files under `folder` still need: their sizes minus the blocks already allocated.

    An extraction preallocates its layer files as sparse files of their final size, so this is
    what the rest of it will write there.
    """
    total = 0
    for path in Path(folder).rglob("*"):
        with contextlib.suppress(OSError):
            stat = path.lstat()
            if path.is_file():
                total += max(0, stat.st_size - stat.st_blocks * 512)
    return total


def disk_full_error(folder: str | os.PathLike, what: str, needed: int | None, *, place: str = "") -> DiskFullError:
    """The one-line error for `what` running out of space in `folder` (`place` names it, e.g. "the workspace")."""
    free = free_bytes(folder)
    where = f"{place} {folder}" if place else str(folder)
    need = f"it needs about {human_bytes(needed)}" if needed else "it needs more space"
    have = f"{human_bytes(free)} free" if free is not None else "free space unknown"
    return DiskFullError(f"no space left in {where}: {what} stopped; {need}, {have}. "
                         "Free some space there (or choose another folder) and run the same command again")


@contextlib.contextmanager
def reporting_full_disk(
    folder: str | os.PathLike,
    what: str,
    needed: int | Callable[[], int | None] | None = None,
    *,
    place: str = "",
) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into a DiskFullError naming `folder` and the space needed.

    needed: bytes the write needs, or a function computing them after the failure (e.g. from
        what is left to write); None when unknown.
    """
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        amount = needed() if callable(needed) else needed
        raise disk_full_error(folder, what, amount, place=place) from None
