"""Steering smollm2 along a sentiment direction: hooks that change nothing at alpha 0, leave nothing behind, and move the probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from core.errors import LayerscopeError
from core.interventions.directions import mean_difference_direction
from core.interventions.readout import fit_readout
from core.interventions.records import Direction, SteeringResult
from core.interventions.steer import generate_greedy, left_padded, steer, steering_hook

STEERED = "model.layers.10"  # a middle layer of smollm2's 30, where the sentiment direction steers cleanly
LATER = "model.layers.20"
PROMPTS = (
    "The food at this place was",
    "I have to say the service",
    "My holiday this year was",
    "The new phone I bought is",
    "Honestly, the match last night was",
    "The weather this weekend has been",
    "My visit to the doctor was",
    "Overall, my experience with the bank was",
)


@pytest.fixture(scope="module")
def sentiment_run(smollm2, session_store):
    """A mean-pooled smollm2 run of demo:sentences at the steered layer and a later one."""
    data = core.load_dataset("demo:sentences", limit=80)
    return core.extract(smollm2, data, layers=[STEERED, LATER], pooling="mean", store=session_store)


@pytest.fixture(scope="module")
def direction(sentiment_run) -> Direction:
    return mean_difference_direction(sentiment_run, STEERED, "sentiment", "positive")


@pytest.fixture(scope="module")
def probe(sentiment_run):
    return fit_readout(sentiment_run, "sentiment", "positive", [STEERED, LATER])


def _hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def test_steer__alpha_zero_leaves_logits_and_tokens_bit_identical(smollm2, direction):
    inputs = left_padded(smollm2, PROMPTS[:2])
    plain = generate_greedy(smollm2, inputs, 3)
    with steering_hook(smollm2, direction, 0.0, "all"):
        hooked = generate_greedy(smollm2, inputs, 3)
    assert torch.equal(plain.sequences, hooked.sequences)
    assert all(torch.equal(a, b) for a, b in zip(plain.logits, hooked.logits))
    result = steer(smollm2, direction, PROMPTS[:2], [0.0, 0.5], max_new_tokens=3, position="last")
    width = inputs["input_ids"].shape[1]
    expected = [smollm2.tokenizer.decode(row[width:], skip_special_tokens=True) for row in plain.sequences]
    assert list(result.continuations[0]) == expected
    assert np.all(result.kl[0] == 0.0)
    assert np.all(result.kl[1] > 0.0)  # the same path with alpha != 0 does change the distribution


def test_steer__hooks_removed_when_generation_raises(smollm2, direction):
    ids = left_padded(smollm2, PROMPTS[:1])
    with torch.inference_mode():
        before = smollm2.module(**ids).logits
    hooks_before = _hook_count(smollm2.module)
    during = []

    def failing_progress(done: int, total: int, what: str) -> None:
        during.append(_hook_count(smollm2.module))
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        steer(smollm2, direction, PROMPTS[:2], [4.0], max_new_tokens=3, progress=failing_progress)
    assert during and during[0] > hooks_before  # the hook was attached when generation raised
    assert _hook_count(smollm2.module) == hooks_before
    with torch.inference_mode():
        after = smollm2.module(**ids).logits
    assert torch.equal(before, after)


@pytest.mark.slow
def test_steer__sentiment_direction_moves_the_probe_with_alpha(smollm2, direction, probe, session_store):
    # in units of the prompts' median token norm at the layer; beyond about +-1 the text degenerates
    alphas = [-0.75, 0.0, 0.75]
    result = steer(smollm2, direction, PROMPTS, alphas, max_new_tokens=10, readout=probe, store=session_store)
    assert isinstance(result, SteeringResult)
    assert result.continuations.shape == (3, len(PROMPTS))
    assert result.readout_layers == (STEERED, LATER)
    assert np.all(np.diff(result.continuation_readout) > 0.05), result.continuation_readout
    assert result.params["scale"] == "prompts" and result.scale < direction.scale * 5  # a typical token, not the sink
    assert np.all(np.diff(result.readout[:, 0]) > 0), result.readout
    assert result.kl[1].max() == 0.0 and result.kl[[0, 2]].min() > 0
    again = steer(smollm2, direction, PROMPTS, alphas, max_new_tokens=10, readout=probe, store=session_store)
    assert session_store.counts["steering", "hit"] >= 1
    np.testing.assert_array_equal(again.continuations, result.continuations)


def _with(direction: Direction, **changes) -> Direction:
    fields = {f: getattr(direction, f) for f in ("vector", "layer", "model", "source", "scale", "provenance", "name")}
    return Direction(**{**fields, **changes})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"direction": {"vector": np.ones(100, dtype=np.float32) / 10}}, "direction width 100 does not match layer"),
        ({"direction": {"layer": "model.layers.99"}}, "'model.layers.99' is not a layer of smollm2"),
        ({"alphas": [1.0, float("nan")]}, "alpha=nan must be a finite number"),
        ({"alphas": [float("inf")]}, "alpha=inf must be a finite number"),
        ({"alphas": []}, "alphas=.* must hold at least one number"),
        ({"prompts": []}, "prompts=.* must hold at least one prompt"),
        ({"prompts": ["fine", "  "]}, "prompt 1 .* is empty"),
        ({"max_new_tokens": 0}, "max_new_tokens=0 must be an integer between 1 and 512"),
        ({"position": "first"}, "position='first' must be one of: all, last"),
    ],
)
def test_steer__bad_input_raises_one_clear_message(smollm2, direction, change, message):
    args = {"direction": direction, "prompts": PROMPTS[:1], "alphas": [1.0], "max_new_tokens": 2}
    if "direction" in change:
        args["direction"] = _with(direction, **change.pop("direction"))
    args.update(change)
    with pytest.raises(LayerscopeError, match=message):
        steer(smollm2, args.pop("direction"), args.pop("prompts"), args.pop("alphas"), **args)


def test_steer__encoder_is_refused(minilm, direction):
    on_encoder = _with(direction, vector=np.ones(384, dtype=np.float32) / np.sqrt(384), layer="encoder.layer.3",
                       model=minilm.identity)
    with pytest.raises(LayerscopeError, match="steering needs a causal LM; minilm is an encoder"):
        steer(minilm, on_encoder, ["hello"], [1.0])
