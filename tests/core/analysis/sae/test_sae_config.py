"""core.analysis.sae.config: SAEConfig checks its values and gives equal configs one store key."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.sae import SAEConfig, SAETrainer
from core.errors import LayerscopeError


def test_config__width_smaller_than_d_is_refused():
    with pytest.raises(LayerscopeError, match=r"expansion=0.5 .*width smaller than d"):
        SAEConfig(expansion=0.5)


def test_config__k_larger_than_width_is_refused():
    config = SAEConfig(expansion=1.0, k=500)
    with pytest.raises(LayerscopeError, match=r"k=500 is larger than the width 384"):
        config.check_for(384)
    with pytest.raises(LayerscopeError, match="k=500"):
        SAETrainer(config, 384)


@pytest.mark.parametrize("bad", [{"architecture": "gated"}, {"lr": 0.0}, {"batch_size": 0},
                                 {"training_tokens": 10, "batch_size": 64}, {"held_out_fraction": 1.0},
                                 {"k": 0}, {"normalize_activations": "layer_norm"}])
def test_config__bad_values_name_the_parameter(bad):
    name = next(iter(bad))
    with pytest.raises(LayerscopeError, match=name):
        SAEConfig(**bad)


def test_config__equal_values_give_one_store_key():
    from core.analysis.sae import sae_key

    a, b = SAEConfig(expansion=4, k=np.int64(32)), SAEConfig(expansion=4.0, k=32)
    assert a == b and sae_key("run", "layer", a) == sae_key("run", "layer", b)
    assert sae_key("run", "layer", a) != sae_key("run", "layer", SAEConfig(expansion=4.0, k=32, seed=1))


def test_config__is_frozen_and_round_trips_through_a_dict():
    config = SAEConfig(architecture="standard", l1_coefficient=3.0, seed=4)
    with pytest.raises(AttributeError):
        config.seed = 5  # type: ignore[misc]
    assert SAEConfig.from_dict(config.as_dict()) == config
