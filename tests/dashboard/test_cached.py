"""The dashboard's cached model path: a model shared by every session leaves global random state alone."""

from __future__ import annotations

import pytest
import torch

from core.store import WORKSPACE_ENV
from dashboard import cached


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    cached.load_model.clear()
    yield tmp_path / "ws"
    cached.load_model.clear()


def _global_draw(seed: int, load=None) -> torch.Tensor:
    torch.manual_seed(seed)
    if load is not None:
        load()
    return torch.rand(4)


@pytest.mark.parametrize("name, reinit", [("minilm", True), ("digits-mlp:seed=1", False)])
def test_load_model__leaves_the_global_generator_where_it_was(workspace, name, reinit):
    untouched = _global_draw(7)
    after_load = _global_draw(7, lambda: cached.load_model(name, reinit=reinit, seed=3))
    torch.testing.assert_close(after_load, untouched)


def test_load_model__untrained_twin_is_the_same_for_the_same_seed(workspace):
    first = cached.load_model("minilm", reinit=True, seed=3).module.state_dict()
    cached.load_model.clear()
    torch.manual_seed(99)  # whatever the global state, the seed decides the weights
    second = cached.load_model("minilm", reinit=True, seed=3).module.state_dict()
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name])
    other = cached.load_model("minilm", reinit=True, seed=4).module.state_dict()
    assert any(not torch.equal(first[n], other[n]) for n in first if first[n].is_floating_point())
