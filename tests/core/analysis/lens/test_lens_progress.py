"""The logit lens reports its forward pass and then each layer read, ending at its total."""

from __future__ import annotations

from core.analysis.lens import logit_lens


def test_logit_lens__reports_the_forward_pass_then_every_layer(tiny_llama):
    calls = []
    result = logit_lens(tiny_llama, "the cat sat on the mat", progress=lambda *call: calls.append(call))
    steps = result.n_layers + 1
    assert calls[0][:2] == (0, steps) and "tokens" in calls[0][2]
    assert [done for done, _, _ in calls] == [0, *range(2, steps + 1)]  # the forward pass is step 1
    assert {total for _, total, _ in calls} == {steps}
    assert calls[-1][2] == f"layer {result.n_layers} of {result.n_layers} read through the unembedding"
