"""Cached wrappers over core: models in st.cache_resource, results in st.cache_data.

Pages call these, never core's heavy functions directly, so a rerun reads
memory or the store instead of recomputing. Cached models are shared by every
session: nothing here mutates them.
"""

from __future__ import annotations

import os

import streamlit as st

import core
from core.store import Store

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def store() -> Store:
    return Store()


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def load_model(name: str, reinit: bool = False, seed: int = 0) -> core.LoadedModel:
    return core.load_model(name, reinit=reinit, seed=seed, workspace=store().root)


def list_runs() -> list[dict]:
    """Complete runs of the current workspace, newest first (re-read at most every 5 s)."""
    return _list_runs(str(store().root))


@st.cache_data(show_spinner=False, ttl=5)
def _list_runs(root: str) -> list[dict]:
    return Store(root).list_runs()


list_runs.clear = _list_runs.clear  # pages call services.list_runs.clear() after writing a run


def open_run(key: str) -> core.Activations:
    """The run, checksums verified once per process per file (cheap on reruns)."""
    return store().open_run(key)


def describe_run(run: dict) -> str:
    """One line naming a run: model · dataset · inputs · pooling · layers."""
    return (f"{run['model']['name']} · {run['dataset']['name']} · {run['n_inputs']:,} inputs · {run['pooling']} · "
            f"{len(run['layers'])} layers")
