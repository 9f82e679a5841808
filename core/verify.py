"""Checking a whole workspace: every entry against its checksums, orphans of killed writers, stale locks.

`verify(store)` re-hashes every file of every complete run (`runs/<key>/`) and result or
folder entry (`results/<kind>/<key>/`) against the sha256 its meta.json lists, and finds

- damaged entries: a meta.json that is unreadable or lists no checksums, a listed file
  missing or changed;
- orphans: an interrupted extraction (`runs/<key>.partial/` whose lock `locks/<key>.lock`
  no process holds), a temporary folder `<name>.<uuid>.tmp` or file `.<name>.<uuid>.tmp`
  left by a killed writer (also of an export or report under `exports/`), a folder without meta.json;
- stale locks: files under `locks/` that no process holds (tested with a non-blocking flock).

With `repair=True` damaged entries and orphans are moved to `damaged/<timestamp>/<their path>`
(kept for inspection, invisible to readers, so the next request recomputes them) and
stale lock files are removed; healthy entries are not touched. Temporary files and locks
younger than `min_age_s` are left alone: a live writer may be between creating and using them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core.atomic import file_sha256, read_json
from core.errors import LayerscopeError
from core.store import Store
from core.validation import check_number

DAMAGED = "damaged"
ORPHAN = "orphan"
STALE_LOCK = "stale lock"

# `<name>.<32 hex>.tmp` (atomic_dir's folders) and `.<name>.<32 hex>.tmp` (atomic_file's files)
_TMP_NAME = re.compile(r"^(?P<dot>\.?)(?P<name>.+)\.[0-9a-f]{32}\.tmp$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a workspace."""

    what: str  # DAMAGED, ORPHAN or STALE_LOCK
    path: str  # relative to the workspace
    reason: str  # one line a person can act on
    moved_to: str | None = None  # where repair put it (relative to the workspace); None: left or removed
    repaired: bool = False

    def line(self) -> str:
        done = ""
        if self.repaired:
            done = f" -> moved to {self.moved_to}" if self.moved_to else " -> removed"
        return f"{self.what}: {self.path}: {self.reason}{done}"


@dataclass
class VerifyReport:
    """What `verify` checked and found (and repaired)."""

    workspace: str
    checked: int = 0  # complete entries whose checksums were verified
    in_progress: list[str] = field(default_factory=list)  # `.partial` runs whose lock is held
    problems: list[Problem] = field(default_factory=list)
    repair: bool = False

    def count(self, what: str) -> int:
        return sum(p.what == what for p in self.problems)

    @property
    def clean(self) -> bool:
        return not self.problems

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    @property
    def failed(self) -> bool:
        """Whether a damaged or orphaned entry is left. An unheld lock file is harmless (every finished
        job leaves one behind), so stale locks are listed and removed by repair but fail nothing."""
        return any(p.what != STALE_LOCK for p in self.unrepaired)

    def summary(self) -> str:
        text = (f"{self.checked} entries checked, {self.count(DAMAGED)} damaged, "
                f"{self.count(ORPHAN)} orphaned, {self.count(STALE_LOCK)} stale locks")
        if self.repair and self.problems:
            text += f"; {len(self.problems) - len(self.unrepaired)} repaired"
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "clean": self.clean, "failed": self.failed, "summary": self.summary()}


def verify(store: Store, *, repair: bool = False, min_age_s: float = 60.0) -> VerifyReport:
    """Check every entry of `store`'s workspace; with `repair`, move problems aside and drop stale locks."""
    min_age_s = check_number("min_age_s", min_age_s, low=0)
    if not store.root.is_dir():
        raise LayerscopeError(f"workspace={str(store.root)!r} is not a folder; pass an existing workspace")
    checker = _Checker(store, repair=repair, min_age_s=min_age_s)
    checker.runs()
    checker.results()
    checker.exports()
    checker.locks()
    return checker.report


class _Checker:
    def __init__(self, store: Store, *, repair: bool, min_age_s: float) -> None:
        self.store = store
        self.root = store.root
        self.repair = repair
        self.min_age_s = min_age_s
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.report = VerifyReport(workspace=str(self.root), repair=repair)

    # ----- the parts of a workspace -------------------------------------------------------
    def runs(self) -> None:
        for item in _children(self.root / "runs"):
            if item.is_dir() and item.name.endswith(".partial"):
                self._partial(item)
            else:
                self._item(item)

    def results(self) -> None:
        for kind in _children(self.root / "results"):
            if kind.is_dir():
                for item in _children(kind):
                    self._item(item)
            else:
                self._tmp(kind)

    def exports(self) -> None:
        """Temporary files and folders of interrupted exports and reports, at any depth of exports/."""
        pending = _children(self.root / "exports")
        while pending:
            item = pending.pop()
            if _TMP_NAME.match(item.name):
                self._tmp(item)
            elif item.is_dir() and not item.is_symlink():
                pending.extend(_children(item))

    def locks(self) -> None:
        for lock in _children(self.root / "locks"):
            if not lock.is_file() or not self._old(lock):
                continue
            with _try_lock(lock) as free:
                if not free:
                    continue
                problem = Problem(STALE_LOCK, self._rel(lock), "no process holds this lock")
                if self.repair:
                    lock.unlink(missing_ok=True)  # while held, so no one locks it in between
                    problem = replace(problem, repaired=True)
                self.report.problems.append(problem)

    # ----- one item -------------------------------------------------------------------------
    def _item(self, item: Path) -> None:
        """A complete-looking entry, a temporary left by a killed writer, or a stray folder."""
        if _TMP_NAME.match(item.name):
            self._tmp(item)
        elif item.is_dir():
            if (item / "meta.json").is_file() or (item / "meta.json").is_symlink():
                self._entry(item)
            elif self._old(item):
                self._problem(ORPHAN, item, "a folder without meta.json (never completed)")

    def _entry(self, folder: Path) -> None:
        self.report.checked += 1
        reason = _damage(folder)
        if reason is not None:
            self._problem(DAMAGED, folder, reason)
            return
        for inner in sorted(folder.rglob("*")):  # e.g. a meta.json rewrite killed before its rename
            if _TMP_NAME.match(inner.name):
                self._tmp(inner)

    def _partial(self, folder: Path) -> None:
        key = folder.name.removesuffix(".partial")
        lock = self.root / "locks" / f"{key}.lock"
        with _try_lock(lock) as free:
            if not free:
                self.report.in_progress.append(self._rel(folder))
                return
            # moved while its lock is held, so an extraction of the key cannot start on it meanwhile
            self._problem(ORPHAN, folder, f"an interrupted extraction ({_progress(folder)}); "
                          "the same extract command resumes it")

    def _tmp(self, path: Path) -> None:
        if _TMP_NAME.match(path.name) and self._old(path):
            self._problem(ORPHAN, path, "a temporary " + ("folder" if path.is_dir() else "file")
                          + " left by an interrupted write")

    # ----- helpers ----------------------------------------------------------------------------
    def _old(self, path: Path) -> bool:
        try:
            return time.time() - path.lstat().st_mtime >= self.min_age_s
        except FileNotFoundError:  # finished or removed by its writer meanwhile
            return False

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def _problem(self, what: str, path: Path, reason: str) -> None:
        problem = Problem(what, self._rel(path), reason)
        if self.repair:
            try:
                problem = replace(problem, moved_to=self._rel(self._move_aside(path)), repaired=True)
            except OSError as err:
                problem = replace(problem, reason=f"{reason}; could not move it aside: {err.strerror or err}")
        self.report.problems.append(problem)

    def _move_aside(self, path: Path) -> Path:
        """Move `path` to damaged/<timestamp>/<its path in the workspace> (a new name if taken)."""
        target = self.root / DAMAGED / self.stamp / self._rel(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"{path.name}.{n}")
        os.replace(path, target)
        return target


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _damage(folder: Path) -> str | None:
    """Why the entry in `folder` is damaged, or None when every listed file matches its checksum."""
    try:
        meta = read_json(folder / "meta.json")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "meta.json is unreadable"
    checksums = meta.get("checksums") if isinstance(meta, dict) else None
    if not isinstance(checksums, dict):
        return "meta.json lists no checksums"
    inside = folder.resolve()
    for rel, expected in sorted(checksums.items()):
        path = folder / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not path.resolve().is_relative_to(inside):
            return f"meta.json lists {rel!r}, outside the entry"
        if not path.is_file():
            return f"{rel} is missing"
        try:
            actual = file_sha256(path)
        except OSError as err:
            return f"{rel} is unreadable ({err.strerror or err})"
        if actual != expected:
            return f"checksum of {rel} does not match"
    return None


def _progress(folder: Path) -> str:
    try:
        state = read_json(folder / "progress.json")
        return f"{int(state['done'])} of {len(state['plan'])} batches written"
    except (OSError, ValueError, KeyError, TypeError):
        return "no batch recorded"


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """Hold the flock on `path` if no other process does; yields whether it is held."""
    try:
        fd = os.open(path, os.O_RDONLY)  # neither creates, truncates nor touches the file's time
    except FileNotFoundError:
        yield True  # no lock file: no holder
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
