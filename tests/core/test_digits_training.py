"""digits-mlp's weights: trained once into the workspace, reporting each epoch, read back after."""

from __future__ import annotations

import torch

from core.models.bundled import digits_mlp_weights, train_digits_mlp


def test_train_digits_mlp__reports_each_epoch_then_the_end():
    calls = []
    train_digits_mlp(3, epochs=3, progress=lambda *call: calls.append(call))
    assert calls == [(0, 3, "training epoch 1 of 3"), (1, 3, "training epoch 2 of 3"), (2, 3, "training epoch 3 of 3"),
                     (3, 3, "trained")]


def test_digits_mlp_weights__trains_on_first_use_only_and_loads_as_the_model(tmp_path):
    import core

    calls = []
    path = digits_mlp_weights(2, tmp_path, progress=lambda *call: calls.append(call))
    assert path.is_file() and calls[-1] == (20, 20, "trained")
    later = []
    assert digits_mlp_weights(2, tmp_path, progress=lambda *call: later.append(call)) == path and not later
    loaded = core.load_model("digits-mlp:seed=2", workspace=tmp_path, device="cpu")
    from safetensors.torch import load_file

    stored = load_file(str(path))
    for name, tensor in loaded.module.state_dict().items():
        torch.testing.assert_close(tensor, stored[name])
