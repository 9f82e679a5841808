"""The progress callback every long computation in core accepts.

`progress(done, total, what)` is called as work advances: `done` of `total` units
(batches, layers, shards) are finished and `what` says what is being done, e.g.
"layer 3 of 7". Core never imports streamlit: the dashboard passes a callback that
updates a progress bar, the CLI one that prints.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]


def report(progress: Progress | None, done: int, total: int, what: str) -> None:
    """Call `progress` when one was given."""
    if progress is not None:
        progress(done, total, what)
