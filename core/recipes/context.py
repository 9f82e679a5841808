"""What recipes share: the store, a model loader, runs opened once and results computed once.

The CLI and a report use one context for every figure; the dashboard keeps one per
workspace for all sessions (its loaders are its cached ones). Results are keyed by run
keys (content hashes) and parameters, so sharing them across sessions is safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

MAX_RESULTS = 64  # results kept in memory (least recently used dropped first)


class Context:
    """The store and loaders recipes read through, with a bounded memo of results."""

    def __init__(
        self,
        store,
        *,
        load_model: Callable[[str], Any] | None = None,
        open_run: Callable[[str], Any] | None = None,
        max_results: int = MAX_RESULTS,
    ) -> None:
        self.store = store
        self._load_model = load_model
        self._open_run = open_run
        self._max_results = max_results
        self._runs: dict[str, Any] = {}
        self._results: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()  # the dashboard's sessions share a context from several threads

    def run(self, key: str):
        """The run `key` (an Activations), opened once."""
        if self._open_run is not None:
            return self._open_run(key)
        with self._lock:
            acts = self._runs.get(key)
        if acts is None:
            acts = self.store.open_run(key)
            with self._lock:
                self._runs[key] = acts
        return acts

    def model(self, name: str):
        """The model `name` (a LoadedModel), through the given loader or core.load_model."""
        if self._load_model is not None:
            return self._load_model(name)
        import core

        return core.load_model(name, workspace=self.store.root)

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, or its value kept from an earlier call with the same key."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        value = compute()  # outside the lock: other figures need not wait for a long computation
        with self._lock:
            self._results[key] = value
            while len(self._results) > self._max_results:
                self._results.popitem(last=False)
        return value
