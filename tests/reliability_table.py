"""What the fault-injecting tests tried and lost, as the table in docs/reliability.md.

Each test using the `reliability` fixture (tests/conftest.py) leaves one record per (test, what) in
.pytest_cache/reliability/, overwritten by its next run, so a partial run updates only its own rows.
`python tests/reliability_table.py` (and the end of any pytest run that recorded something) rewrites
the table between the markers in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / ".pytest_cache" / "reliability"
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
# the fault a test file injects, by the start of its name (the first match wins)
KINDS = [
    ("test_kill_", "SIGKILL at a write"),
    ("test_verify", "Damaged and orphaned entries"),
    ("test_full_disk", "Full disk (ENOSPC)"),
    ("test_bad_files", "Bad input files"),
    ("test_hostile_", "Hostile paths and code"),
    ("test_concurrency", "Concurrent processes"),
    ("test_sessions_e2e", "Concurrent browser sessions"),
    ("test_shutdown_e2e", "Shutdown (SIGTERM, Ctrl-C)"),
]


def kind_of(nodeid: str) -> str:
    """The fault kind of a test, from its file's name."""
    name = Path(nodeid.split("::")[0]).name
    return next((kind for prefix, kind in KINDS if name.startswith(prefix)), "Other")


def record(nodeid: str, what: str, tried: int, lost: int) -> None:
    """Keep one record of `tried` faults of kind `what` injected by test `nodeid`, `lost` of them losing data."""
    if not (isinstance(tried, int) and isinstance(lost, int) and 0 <= lost <= tried):
        raise ValueError(f"tried={tried!r}, lost={lost!r} must be integers with 0 <= lost <= tried")
    RECORDS.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(f"{nodeid}\0{what}".encode()).hexdigest()[:16]
    tmp = RECORDS / f".{name}.{os.getpid()}.tmp"  # xdist workers write side by side: each its own file
    tmp.write_text(json.dumps({"test": nodeid, "kind": kind_of(nodeid), "what": what, "tried": tried,
                               "lost": lost, "time": time.time()}))
    tmp.replace(RECORDS / f"{name}.json")


def records() -> list[dict]:
    """Every record kept, oldest first."""
    found = []
    for path in RECORDS.glob("*.json") if RECORDS.is_dir() else []:
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a record being replaced right now: the next regeneration reads it
    return sorted(found, key=lambda r: r["time"])


def recorded_since(started: float) -> bool:
    return any(r["time"] >= started for r in records())


def table(rows: list[dict]) -> str:
    """The markdown table: one row per (kind, what), summed over the tests recording it."""
    grouped: dict[tuple[str, str], dict] = defaultdict(lambda: {"tests": set(), "tried": 0, "lost": 0, "time": 0.0})
    for r in rows:
        g = grouped[(r["kind"], r["what"])]
        g["tests"].add(r["test"].split("::")[0])
        g["tried"] += r["tried"]
        g["lost"] += r["lost"]
        g["time"] = max(g["time"], r["time"])
    lines = ["| Fault | What was tried | Tried | Lost | Tests | Last run |", "|---|---|---:|---:|---|---|"]
    for (kind, what), g in sorted(grouped.items()):
        files = ", ".join(f"`{f}`" for f in sorted(g["tests"]))
        when = time.strftime("%Y-%m-%d", time.gmtime(g["time"]))
        lines.append(f"| {kind} | {what} | {g['tried']} | {g['lost']} | {files} | {when} |")
    tried, lost = sum(g["tried"] for g in grouped.values()), sum(g["lost"] for g in grouped.values())
    lines.append(f"| **All** | | **{tried}** | **{lost}** | | |")
    return "\n".join(lines)


def write_table(doc: Path = DOC) -> str:
    """Rewrite the table between the markers of `doc`; returns the table."""
    text = doc.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{doc} has no {START} ... {END} markers")
    body = table(records())
    head, rest = text.split(START, 1)
    doc.write_text(f"{head}{START}\n{body}\n{END}{rest.split(END, 1)[1]}")
    return body


if __name__ == "__main__":
    print(write_table())
