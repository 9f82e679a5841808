"""Which run each page opens on (dashboard/run_choice.py): pure functions over a run list."""

from __future__ import annotations

import pytest

from dashboard import run_choice


def run(key: str, model: str = "minilm", data: str = "demo:sentences", pooling: str = "mean", *,
        causal: bool = False, untrained: bool = False, fingerprint: str | None = None) -> dict:
    """A run's metadata as Store.list_runs gives it (the fields run_choice reads)."""
    return {
        "key": key,
        "model": {"name": f"{model} (untrained, seed 0)" if untrained else model, "is_causal_lm": causal,
                  "weights": "reinit:0" if untrained else "pretrained"},
        "dataset": {"name": data, "fingerprint": fingerprint or f"fp-{data}"},
        "pooling": pooling,
    }


# newest first, as the workspace lists them
DEMO = [
    run("smollm2-mean", "smollm2", causal=True),
    run("twin-mean", untrained=True),
    run("cities-mean", data="demo:cities"),
    run("minilm-tokens", pooling="tokens"),
    run("minilm-mean"),
]


def test_choose_run__keeps_the_current_run_when_it_fits():
    assert run_choice.choose_run(DEMO, "cities-mean") == "cities-mean"
    assert run_choice.choose_run(DEMO, "minilm-tokens", run_choice.TOKENS) == "minilm-tokens"


def test_choose_run__tokens_page_leaves_a_mean_run_for_the_tokens_run_of_the_same_model_and_inputs():
    runs = [run("smollm2-tokens", "smollm2", pooling="tokens", causal=True), *DEMO]  # newer, another model
    assert run_choice.choose_run(runs, "minilm-mean", run_choice.TOKENS) == "minilm-tokens"
    assert run_choice.choose_run(runs, "smollm2-mean", run_choice.TOKENS) == "smollm2-tokens"


def test_choose_run__prefers_the_same_inputs_then_the_same_model():
    runs = [run("minilm-cities-tokens", data="demo:cities", pooling="tokens"),
            run("smollm2-tokens", "smollm2", pooling="tokens", causal=True), *DEMO]
    # no minilm tokens run on demo:sentences here: the same inputs (smollm2) win over the same model
    without = [r for r in runs if r["key"] != "minilm-tokens"]
    assert run_choice.choose_run(without, "minilm-mean", run_choice.TOKENS) == "smollm2-tokens"
    assert run_choice.choose_run(without, "cities-mean", run_choice.TOKENS) == "minilm-cities-tokens"


def test_choose_run__without_a_current_run_takes_the_preferred_then_trained_then_newest():
    assert run_choice.choose_run(DEMO, None) == "smollm2-mean"  # the newest
    assert run_choice.choose_run(DEMO, None, prefer=run_choice.is_tokens) == "minilm-tokens"
    untrained_first = [run("twin-tokens", pooling="tokens", untrained=True), *DEMO]
    assert run_choice.choose_run(untrained_first, None, run_choice.TOKENS) == "minilm-tokens"


def test_choose_run__a_deleted_current_run_is_like_none():
    assert run_choice.choose_run(DEMO, "gone", run_choice.TOKENS) == "minilm-tokens"


def test_choose_run__none_when_no_run_fits():
    assert run_choice.choose_run([run("a"), run("b")], "a", run_choice.TOKENS) is None
    assert run_choice.choose_run([], None) is None


def test_causal_lm__trained_causal_models_only():
    assert run_choice.is_causal_lm(run("s", "smollm2", causal=True))
    assert not run_choice.is_causal_lm(run("m"))
    assert not run_choice.is_causal_lm(run("t", "smollm2", causal=True, untrained=True))


def test_lens_model__a_causal_lm_even_when_the_current_run_is_an_encoder():
    assert run_choice.lens_model(DEMO, "minilm-mean", "smollm2") == "smollm2"
    gpt = [run("gpt-mean", "gpt2", causal=True), *DEMO]
    assert run_choice.lens_model(gpt, "smollm2-mean", "smollm2") == "smollm2"  # the current one fits: kept
    assert run_choice.lens_model(gpt, "minilm-mean", "smollm2") == "gpt2"  # the newest on the same inputs
    assert run_choice.lens_model([run("m")], "m", "smollm2") == "smollm2"  # none in the workspace: the default


@pytest.mark.parametrize(("pooling", "expected"), [
    ("tokens", ["curvature", "intrinsic_dimension"]),
    ("mean", ["intrinsic_dimension", "dataset_entropy"]),
    ("last", ["intrinsic_dimension", "dataset_entropy"]),
])
def test_geometry_metrics__no_curvature_on_pooled_runs(pooling, expected):
    assert run_choice.geometry_metrics(run("r", pooling=pooling)) == expected


def test_geometry_metrics__are_those_the_demo_precomputes():
    from core.demo import GEOMETRY_METRICS

    assert run_choice.geometry_metrics(run("t", pooling="tokens")) == list(GEOMETRY_METRICS["tokens"])
    assert run_choice.geometry_metrics(run("m")) == list(GEOMETRY_METRICS["pooled"])


def test_hint__names_the_exact_command_for_the_current_model_and_dataset():
    hint = run_choice.TOKENS.hint(run("c", data="demo:cities"))
    assert "`python -m core extract --model minilm --data demo:cities --pooling tokens`" in hint
    assert "Workspace page" in hint
    # an uploaded file or an untrained twin cannot be re-extracted by name: the bundled demo instead
    assert "--model minilm --data demo:sentences --pooling tokens" in run_choice.TOKENS.hint(
        run("u", data="ab12cd.csv"))
    assert "--model smollm2 --data demo:sentences`" in run_choice.CAUSAL_LM.hint(run("m"))
    assert "--model minilm --data demo:sentences" in run_choice.ANY.hint(None)
