"""Shared fixtures of the feature tests: one torch thread and a labelled minilm tokens run."""

from __future__ import annotations

import pandas as pd
import pytest

import core
from core.store import Store
from features_helpers import LAYER


@pytest.fixture(scope="module", autouse=True)
def single_threaded(one_thread):
    """Every test here runs on one torch thread (see one_thread)."""


@pytest.fixture(scope="package")
def labelled_run(tmp_path_factory, minilm):
    """A minilm tokens run of 60 short texts with a categorical and a numeric (60 distinct values) label."""
    root = tmp_path_factory.mktemp("features_ws")
    words = ["rain", "sun", "snow", "wind", "storm", "cloud"]
    rows = [{"text": f"The {words[i % 6]} came back on day {i} and stayed {i % 4 + 1} hours.",
             "weather": words[i % 6], "score": float(i) * 0.37 - 5.0} for i in range(60)]
    path = tmp_path_factory.mktemp("data") / "weather.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    data = core.load_dataset(str(path), text_column="text", label_columns=["weather", "score"])
    store = Store(root)
    return core.extract(minilm, data, layers=[LAYER], pooling="tokens", store=store), store
