"""What the recipe tests' workspaces hold, and the bundled models they share."""

from __future__ import annotations

from dataclasses import dataclass

from core.store import Store


@dataclass(frozen=True)
class Runs:
    """A workspace and the keys of its runs: the one the pages show, a partner on the same inputs, a tokens run."""

    store: Store
    main: str
    partner: str
    tokens: str | None = None


def share_models(store: Store, session_store: Store) -> None:
    """Point the workspace's models folder at the session's: smollm2 is converted and digits-mlp trained once."""
    session_store.models_dir.mkdir(parents=True, exist_ok=True)
    store.root.mkdir(parents=True, exist_ok=True)
    store.models_dir.symlink_to(session_store.models_dir, target_is_directory=True)
