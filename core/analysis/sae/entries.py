"""SAEs in the workspace: Store entries ``results/sae/<key>/`` holding an SAELens folder and more.

An entry holds cfg.json + sae_weights.safetensors (SAELens reads the folder as is), the
training curves as history_*.npy, and meta.json: the run and layer, the config, the
evaluation, how training went, and the sha256 of every file (checked when it is opened).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.analysis.sae.config import SAEConfig
from core.analysis.sae.evaluation import SAEEvaluation
from core.analysis.sae.history import TrainingHistory
from core.analysis.sae.model import SparseAutoencoder
from core.analysis.sae.saelens import load_saelens, write_saelens_files
from core.errors import DamagedEntryError, LayerscopeError
from core.store import Store, make_key

SAE_VERSION = 1  # bump when training or evaluation changes: invalidates stored SAEs
SAE_KIND = "sae"  # entry kind in the store


@dataclass(eq=False)
class StoredSAE:
    """An SAE entry of the workspace: the autoencoder, where it came from and how good it is."""

    key: str
    path: Path
    sae: SparseAutoencoder
    meta: dict[str, Any]
    history: TrainingHistory

    @property
    def run_key(self) -> str:
        return self.meta["run"]

    @property
    def layer(self) -> str:
        return self.meta["layer"]

    @property
    def config(self) -> SAEConfig | None:
        """The training config, or None for an imported SAE."""
        return SAEConfig.from_dict(self.meta["config"]) if self.meta.get("config") else None

    @property
    def evaluation(self) -> SAEEvaluation:
        return SAEEvaluation.from_dict(self.meta["evaluation"])

    @property
    def exclude_first_token(self) -> bool:
        return bool(self.meta.get("exclude_first_token", True))

    @property
    def label(self) -> str:
        return describe_sae(self.meta)


def describe_sae(meta: Mapping[str, Any]) -> str:
    """One line naming a stored SAE: model · layer · architecture · width · seed and tokens (or "imported")."""
    arch = meta.get("architecture", "?")
    k = f" k={meta['k']}" if meta.get("k") else ""
    config = meta.get("config") or {}
    if meta.get("source") == "imported":
        source = "imported"
    else:
        tokens = int(config.get("training_tokens", 0))
        shown = f"{tokens / 1e6:.3g}M" if tokens >= 1e6 else f"{tokens / 1e3:.3g}k"
        source = f"seed {config.get('seed', 0)} · {shown} tokens"
    width = f"{meta.get('d_sae', '?')} latents"
    return f"{meta.get('model', '?')} · {meta.get('layer', '?')} · {arch}{k} · {width} · {source}"


def sae_key(run_key: str, layer: str, config: SAEConfig) -> str:
    """The store key of an SAE trained with `config` on `layer` of run `run_key`."""
    return make_key({"kind": SAE_KIND, "run": run_key, "layer": layer, "config": config.as_dict(),
                     "version": SAE_VERSION})


def imported_sae_key(digest: str, run_key: str, layer: str, exclude_first_token: bool) -> str:
    """The store key of an SAELens folder (its files' sha256 `digest`) imported onto a run's layer."""
    return make_key({"kind": SAE_KIND, "imported": digest, "run": run_key, "layer": layer,
                     "exclude_first_token": exclude_first_token, "version": SAE_VERSION})


def has_sae(store: Store, key: str) -> bool:
    """Whether the workspace holds a complete SAE entry `key`."""
    return (store.entry_dir(SAE_KIND, key) / "meta.json").is_file()


def write_sae(store: Store, key: str, sae: SparseAutoencoder, meta: Mapping[str, Any],
              arrays: Mapping[str, np.ndarray]) -> Path:
    """Write an SAE entry atomically (a reader never sees half of one); returns its folder."""
    full = {**meta, "key": key, "arrays": list(arrays)}
    with store.lock(f"sae-{key}"), store.write_entry(SAE_KIND, key, full) as tmp:
        write_saelens_files(sae, tmp)
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.asarray(array), allow_pickle=False)
    return store.entry_dir(SAE_KIND, key)


def list_saes(store: Store) -> list[dict[str, Any]]:
    """Metadata of every complete SAE entry in the workspace, newest first (each with `key`)."""
    return store.list_entries(SAE_KIND)


def open_sae(store: Store, key: str) -> StoredSAE:
    """The stored SAE `key` (checksums verified)."""
    if not has_sae(store, key):
        raise LayerscopeError(f"SAE {key!r} is not in the workspace {store.root}; train or import it first")
    try:
        folder, meta = store.open_entry(SAE_KIND, key)
    except DamagedEntryError as err:
        raise LayerscopeError(f"{err}; delete it and train the SAE again") from None
    sae = load_saelens(folder)
    try:
        arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in meta.get("arrays", [])}
    except ValueError as err:  # Python objects (a pickle) or a malformed header: never unpickled
        raise LayerscopeError(f"SAE {key}: an array is not plain numbers ({err}); delete it and train it again") from None
    return StoredSAE(key=key, path=folder, sae=sae, meta=meta, history=TrainingHistory.from_arrays(arrays, meta))


def delete_sae(store: Store, key: str) -> None:
    """Remove the SAE entry `key` (nothing happens when it is absent)."""
    store.delete_entry(SAE_KIND, key)
