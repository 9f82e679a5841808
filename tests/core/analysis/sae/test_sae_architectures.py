"""core.analysis.sae.architectures: architectures by name, each one file, used by model, trainer and SAELens I/O."""

from __future__ import annotations

import pytest
import torch

from core.analysis.sae import (
    ARCHITECTURES,
    LOADABLE_ARCHITECTURES,
    Architecture,
    SAEConfig,
    SparseAutoencoder,
    architecture_class,
    load_saelens,
    loadable_architectures,
    register_architecture,
    save_saelens,
    trainable_architectures,
)
from core.analysis.sae.architectures import registry
from core.errors import LayerscopeError


def test_registry__trains_topk_and_standard_and_loads_jumprelu_too():
    assert list(ARCHITECTURES) == ["topk", "standard"] == list(trainable_architectures())
    assert set(LOADABLE_ARCHITECTURES) == {"topk", "standard", "jumprelu"} == set(loadable_architectures())
    with pytest.raises(LayerscopeError, match="architecture='gated' is not supported"):
        architecture_class("gated")
    with pytest.raises(LayerscopeError, match="k=0"):
        SparseAutoencoder(8, 16, architecture="topk", k=0)


class _Doubled(Architecture):
    """ReLU of twice the pre-activation: an architecture defined outside the package."""

    description = "2 x ReLU"

    def activate(self, sae, pre):
        return 2 * torch.relu(pre)


def test_register_architecture__one_class_is_enough_to_build_save_and_load_an_sae(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_ARCHITECTURES", dict(registry._ARCHITECTURES))  # leave the real registry as is
    register_architecture("doubled", _Doubled)
    sae = SparseAutoencoder(4, 6, architecture="doubled")
    with torch.no_grad():
        sae.W_enc.normal_()
    x = torch.randn(3, 4)
    assert torch.allclose(sae.encode(x), 2 * torch.relu(sae.pre_activations(x)))
    loaded = load_saelens(save_saelens(sae, tmp_path / "doubled"))
    assert loaded.architecture == "doubled" and torch.allclose(loaded.encode(x), sae.encode(x))
    assert "doubled" not in trainable_architectures()  # not trainable unless the class says so
    with pytest.raises(LayerscopeError, match="architecture='doubled' must be one of"):
        SAEConfig(architecture="doubled")
