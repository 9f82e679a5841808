"""The Interventions page: empty states, making a direction, steering smollm2, erasing a concept in minilm."""

from __future__ import annotations

import os

import pytest
from apptest_helpers import button
from recipe_checks import assert_page_draws, charts
from recipe_workspaces import share_models

import core
from core.export import figure_spec
from core.interventions.directions import mean_difference_direction
from core.interventions.stored import list_directions, save_direction
from core.recipes import build_figure
from core.report import plan_report
from core.store import Store

PAGE = "interventions.py"
PAGES = ("interventions.py", "workspace.py", "sae_train.py")


@pytest.fixture(scope="module")
def minilm_only(tmp_path_factory, minilm) -> Store:
    """minilm on 60 demo sentences (mean-pooled), and nothing else."""
    store = Store(tmp_path_factory.mktemp("interventions-minilm"))
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), pooling="mean", store=store)
    return store


@pytest.fixture(scope="module")
def both(tmp_path_factory, session_store, minilm, smollm2) -> Store:
    """minilm (60 demo sentences) and smollm2 (24, layers 5, 10, 15, 20) mean-pooled; smollm2's weights shared."""
    store = Store(tmp_path_factory.mktemp("interventions-both"))
    share_models(store, session_store)
    core.extract(minilm, core.load_dataset("demo:sentences", limit=60), pooling="mean", store=store)
    layers = [f"model.layers.{i}" for i in (5, 10, 15, 20)]
    core.extract(smollm2, core.load_dataset("demo:sentences", limit=24), pooling="mean", layers=layers, store=store)
    return store


def run_of(store: Store, model: str):
    return store.open_run(next(r["key"] for r in store.list_runs() if r["model"]["name"] == model))


def open_page(page_app, store, **session_state):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    at = page_app(PAGE, store.root, PAGES)
    for name, value in session_state.items():
        at.session_state[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def infos(at) -> str:
    return " | ".join(i.value for i in at.info)


def test_page__empty_workspace_names_the_extract_command(page_app, tmp_path):
    at = open_page(page_app, Store(tmp_path / "empty"))
    assert "python -m core extract" in infos(at)
    assert not at.tabs


def test_tabs__encoder_only_workspace_says_what_to_do_next(page_app, minilm_only):
    at = open_page(page_app, minilm_only)
    assert [t.label for t in at.tabs] == ["Directions", "Steer", "Erase"]
    text = infos(at)
    assert "No direction is stored yet" in text
    assert "python -m core extract --model smollm2 --data demo:sentences" in text  # Steer: no causal LM
    assert not at.error and not at.get("plotly_chart")  # Erase waits for its button


def test_directions__make_store_and_list(page_app, minilm_only):
    at = open_page(page_app, minilm_only)
    at.selectbox(key="iv_dir_source").set_value("mean_difference").run()
    at.selectbox(key="iv_dir_label").set_value("topic").run()
    positive = at.selectbox(key="iv_dir_positive").options[0]
    button(at, "Make and store direction").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    stored = list_directions(minilm_only)
    assert len(stored) == 1
    key, direction = stored[0]
    assert direction.source == "mean_difference" and direction.provenance["positive"] == positive
    assert direction.provenance["label"] == "topic" and direction.width == 384
    table = at.dataframe[0].value
    assert table["key"].tolist() == [key] and table["source"].tolist() == ["mean difference"]
    assert any(b.label == "Download as safetensors" for b in at.get("download_button"))


def test_steer__encoder_direction_is_one_error(page_app, both):
    minilm_key = save_direction(both, mean_difference_direction(run_of(both, "minilm"), "encoder.layer.3", "sentiment",
                                                                "positive", "negative"))
    at = open_page(page_app, both, iv_st_direction=minilm_key)
    assert len(at.error) == 1
    message = at.error[0].value
    assert "'minilm'" in message and "causal language model" in message and "smollm2" in message


def test_steer__non_finite_alpha_is_one_error(page_app, both):
    smollm = run_of(both, "smollm2")
    key = save_direction(both, mean_difference_direction(smollm, "model.layers.10", "sentiment", "positive",
                                                         "negative"))
    at = open_page(page_app, both, iv_st_direction=key)
    at.text_input(key="interventions_alphas").set_value("1, inf").run()
    button(at, "Steer").click().run()
    assert len(at.error) == 1 and "alpha='inf'" in at.error[0].value and "finite" in at.error[0].value
    assert not at.get("plotly_chart")


@pytest.mark.slow
def test_steer__smollm2_continuations_kl_tokens_and_readout(page_app, both):
    smollm = run_of(both, "smollm2")
    key = save_direction(both, mean_difference_direction(smollm, "model.layers.10", "sentiment", "positive",
                                                         "negative"))
    at = open_page(page_app, both, iv_st_direction=key, iv_st_run=smollm.key)
    assert at.selectbox(key="iv_st_readout_label").value == "sentiment"  # the direction's label, read back
    at.text_area(key="interventions_prompts").set_value("The movie was\nI feel").run()
    at.text_input(key="interventions_alphas").set_value("-6, 6").run()
    at.number_input(key="iv_st_tokens").set_value(3).run()
    button(at, "Steer").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    drawn = charts(at)
    assert set(drawn) >= {"iv_st_continuations", "iv_st_kl", "iv_st_readout", "iv_st_tokens_chart"}
    params = {"direction": key, "prompts": ["The movie was", "I feel"], "alphas": [-6.0, 6.0], "position": "all",
                  "max_new_tokens": 3, "readout_label": "sentiment", "readout_class": "positive"}
    for name, chart in (("steering_continuations", "iv_st_continuations"), ("steering_readout", "iv_st_readout"),
                        ("steering_kl", "iv_st_kl"), ("steering_tokens", "iv_st_tokens_chart")):
        assert_page_draws(drawn[chart], build_figure(figure_spec(name, [smollm.key], **params), both))
    header = drawn["iv_st_continuations"]["data"][0]["header"]["values"]
    assert len(header) == 3 and "alpha = 6" in header[2]


@pytest.mark.slow
def test_erase__minilm_leace_before_after_and_change(page_app, both):
    minilm = run_of(both, "minilm")
    at = open_page(page_app, both, iv_er_run=minilm.key)
    at.selectbox(key="iv_er_layer").set_value("encoder.layer.3").run()
    at.multiselect(key="iv_er_later_encoder.layer.3").set_value(["encoder.layer.5"]).run()
    assert at.selectbox(key="iv_er_label").value == "topic" and at.selectbox(key="iv_er_method").value == "leace"
    button(at, "Erase").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    drawn = charts(at)
    params = {"layer": "encoder.layer.3", "label": "topic", "method": "leace", "later_layers": ["encoder.layer.5"]}
    expected = build_figure(figure_spec("erasure_accuracy", [minilm.key], **params), both)
    assert_page_draws(drawn["iv_er_accuracy"], expected)
    result = expected.result
    assert result.layer_names == ("encoder.layer.3", "encoder.layer.5")
    assert result.accuracy_after[0] <= result.chance + 0.1 < result.accuracy_before[0]
    bars = drawn["iv_er_change"]["data"][0]
    assert bars["x"] == ["LEACE", "mean-difference projection"]
    assert result.mean_squared_change <= result.mean_difference_change + 1e-9  # LEACE moves the least
    assert_page_draws(drawn["iv_er_change"], build_figure(figure_spec("erasure_change", [minilm.key], **params), both))
    planned = [spec for spec in plan_report(both, [minilm.key]) if spec["figure"].startswith("erasure")]
    assert [spec["figure"] for spec in planned] == ["erasure_accuracy", "erasure_change"]  # the report shows it
    assert planned[0]["params"]["later_layers"] == ["encoder.layer.5"]
