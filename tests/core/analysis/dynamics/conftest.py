"""A checkpoint series of the digits MLP (3 checkpoints, 100 digits, 3 layers), built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dynamics_series_builder import digits_series


@pytest.fixture(scope="session")
def digits_checkpoints(tmp_path_factory):
    """(store, series): the digits MLP at initialisation and after epochs 1 and 2, extracted on 100 digits."""
    store = Store(tmp_path_factory.mktemp("dynamics-digits"))
    return store, digits_series(store)
