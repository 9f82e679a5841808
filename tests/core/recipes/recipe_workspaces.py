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
    saes: tuple[str, ...] = ()  # SAEs trained on the tokens run, with their feature statistics (and matching)


def share_models(store: Store, session_store: Store) -> None:
    """Point the workspace's models folder at the session's: smollm2 is converted and digits-mlp trained once."""
    session_store.models_dir.mkdir(parents=True, exist_ok=True)
    store.root.mkdir(parents=True, exist_ok=True)
    store.models_dir.symlink_to(session_store.models_dir, target_is_directory=True)


TINY_SAE = {"expansion": 1.0, "k": 8, "batch_size": 128, "training_tokens": 128 * 20, "lr": 2e-3, "dead_window": 1000}


def with_saes(runs: Runs, seeds: tuple[int, ...]) -> Runs:
    """`runs` with tiny SAEs (one per seed) on the middle layer of its tokens run, their statistics stored.

    With two SAEs their matching is stored too, so the pages draw every SAE figure without a click.
    """
    from dataclasses import replace

    from core.analysis.features import feature_stats_cached, match_features_cached
    from core.analysis.sae import SAEConfig, train_sae_on_run

    acts = runs.store.open_run(runs.tokens)
    layer = acts.layer_names[len(acts.layer_names) // 2]
    entries = [train_sae_on_run(acts, layer, SAEConfig(**TINY_SAE, seed=seed), store=runs.store) for seed in seeds]
    for entry in entries:
        feature_stats_cached(entry, acts, runs.store)
    if len(entries) == 2:
        match_features_cached(*entries, acts, acts, runs.store)
    return replace(runs, saes=tuple(entry.key for entry in entries))
