"""What the geometry, compare and lens pages plan to compute, on run metadata as Store.list_runs gives it."""

from __future__ import annotations

import pytest

from dashboard import planning

LAYERS = ["embeddings", "encoder.layer.0", "encoder.layer.1"]


def run(key: str, model: str = "minilm", *, fingerprint: str = "fp-sentences", dataset: str = "demo:sentences",
        pooling: str = "tokens", n_inputs: int = 60, weights: str = "hf-abc", causal: bool = False) -> dict:
    return {"key": key, "model": {"name": model, "weights": weights, "is_causal_lm": causal},
            "dataset": {"name": dataset, "fingerprint": fingerprint}, "pooling": pooling, "n_inputs": n_inputs,
            "layers": list(LAYERS), "max_length": None}


def twin_of(trained: dict, key: str) -> dict:
    twin = run(key, f"{trained['model']['name']} (untrained, seed 0)", fingerprint=trained["dataset"]["fingerprint"],
               pooling=trained["pooling"], weights="reinit0-123")
    return twin


# ----- geometry --------------------------------------------------------------------------------------
def test_geometry_jobs__first_variants_together_further_variants_alone():
    jobs = planning.geometry_jobs(["curvature", "intrinsic_dimension"], ["signed", "abs"], ["twonn", "mle"], 2.0)
    assert [metrics for metrics, _ in jobs] == [("curvature", "intrinsic_dimension"), ("curvature",),
                                               ("intrinsic_dimension",)]
    assert jobs[0][1] == {"curvature_variant": "signed", "id_method": "twonn", "entropy_alpha": 2.0}
    assert jobs[1][1] == {"curvature_variant": "abs"} and jobs[2][1] == {"id_method": "mle"}


def test_geometry_jobs__variants_of_a_metric_not_chosen_are_ignored():
    jobs = planning.geometry_jobs(["dataset_entropy"], ["signed", "abs"], ["twonn", "mle"], 1.0)
    assert len(jobs) == 1


def test_plan_geometry__stored_twin_is_drawn_as_a_control_after_its_run():
    trained = run("a")
    twin = twin_of(trained, "t")
    jobs = planning.geometry_jobs(["curvature"], ["signed", "abs"], ["twonn"], 1.0)
    plan = planning.plan_geometry(trained, [trained, twin], second=None, jobs=jobs, with_twin=True)
    assert plan.missing_twins == [] and plan.run_keys() == ["a", "t"]
    assert [(e.name, e.run["key"], e.control) for e in plan.entries()] == [
        ("minilm", "a", False), ("minilm (untrained, seed 0)", "t", True)]
    assert plan.jobs_with("curvature") == [0, 1] and plan.jobs_with("intrinsic_dimension") == []
    assert "2 metric set(s) x 2 run(s)" == plan.summary()


def test_plan_geometry__missing_twin_is_extracted_first_then_found():
    trained = run("a")
    plan = planning.plan_geometry(trained, [trained], second=None, jobs=[(("curvature",), {})], with_twin=True)
    assert [r["key"] for r in plan.missing_twins] == ["a"]
    assert "extracting the untrained twin of minilm" in plan.summary()
    request = plan.request
    plan.update_twins([trained, twin_of(trained, "t")])
    assert plan.missing_twins == [] and plan.run_keys() == ["a", "t"]
    assert plan.request == request  # what was asked for, before and after the extraction


def test_plan_geometry__an_untrained_run_gets_no_twin():
    untrained = twin_of(run("a"), "t")
    plan = planning.plan_geometry(untrained, [untrained], second=None, jobs=[(("curvature",), {})], with_twin=True)
    assert plan.twins == {} and [r["key"] for r in plan.untrained] == ["t"]


def test_plan_geometry__two_runs_of_one_model_are_named_by_pooling_or_dataset():
    tokens, mean = run("a", pooling="tokens"), run("b", pooling="mean")
    plan = planning.plan_geometry(tokens, [tokens, mean], second="b", jobs=[(("curvature",), {})], with_twin=False)
    assert [e.name for e in plan.entries()] == ["minilm · tokens", "minilm · mean"]
    other = run("c", dataset="demo:cities", fingerprint="fp-cities")
    plan = planning.plan_geometry(tokens, [tokens, other], second="c", jobs=[(("curvature",), {})], with_twin=False)
    assert [e.name for e in plan.entries()] == ["minilm · demo:sentences", "minilm · demo:cities"]


def test_plan_geometry__request_is_hashable_and_names_what_changes():
    a, b = run("a"), run("b", "smollm2")
    jobs = [(("curvature",), {"curvature_variant": "signed"})]
    one = planning.plan_geometry(a, [a, b], second=None, jobs=jobs, with_twin=False)
    two = planning.plan_geometry(a, [a, b], second="b", jobs=jobs, with_twin=False)
    other = planning.plan_geometry(a, [a, b], second=None, jobs=[(("curvature",), {"curvature_variant": "abs"})],
                                   with_twin=False)
    assert len({one.request, two.request, other.request}) == 3


# ----- compare ---------------------------------------------------------------------------------------
def test_same_inputs__needs_the_same_fingerprint_and_size():
    a, b = run("a"), run("b", "smollm2")
    elsewhere, fewer = run("c", fingerprint="fp-other"), run("d", n_inputs=30)
    partners = planning.same_inputs(a, [a, b, elsewhere, fewer])
    assert [r["key"] for r in partners] == ["a", "b"]


@pytest.mark.parametrize("model, index", [("minilm", 1), ("smollm2", 0), ("my-bert", 0)])
def test_partner_model__offers_a_bundled_model_other_than_model_a(model, index):
    assert planning.partner_model(run("a", model), ("minilm", "smollm2")) == index


# ----- logit lens --------------------------------------------------------------------------------------
def test_lens_models__trained_models_of_the_runs_and_the_default():
    encoder, causal = run("a"), run("b", "gpt-tiny", causal=True)
    untrained = twin_of(causal, "t")
    names, chosen = planning.lens_models([encoder, causal, untrained], causal, "smollm2")
    assert names == ["minilm", "gpt-tiny", "smollm2"] and chosen == "gpt-tiny"
    assert planning.lens_models([], None, "smollm2") == (["smollm2"], "smollm2")
    assert planning.is_encoder([encoder, causal], "minilm") and not planning.is_encoder([encoder, causal], "gpt-tiny")
