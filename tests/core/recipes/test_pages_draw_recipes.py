"""Every registered recipe builds, on a run of each bundled model kind it applies to, the figure its page draws.

Each page runs under AppTest on a small workspace; the figure it drew (plotly JSON) is
compared, trace by trace, with the recipe built from the spec a sidecar would hold, in a
context of its own (results read back from the store, the lens computed again).
"""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from apptest_helpers import button  # noqa: E402
from recipe_checks import assert_page_draws, charts  # noqa: E402

from core.export import figure_spec  # noqa: E402
from core.figures.geometry import METRIC_TITLES  # noqa: E402
from core.recipes import RECIPES, build_figure, figure_kinds  # noqa: E402
from dashboard import run_choice, state  # noqa: E402

KINDS = [
    pytest.param("minilm_runs", id="minilm"),
    pytest.param("digits_runs", id="digits-mlp"),
    pytest.param("smollm2_runs", id="smollm2", marks=pytest.mark.slow),
    pytest.param("efficientnet_runs", id="efficientnet-lite0", marks=pytest.mark.slow),
]
GEOMETRY_OPTIONS = {"curvature_variant": "signed", "id_method": "twonn", "entropy_alpha": 1.0}
CHECKED = {  # recipe -> the page whose figure the tests below compare it with
    "layer_map": "views/explorer.py",
    "animated_layer_map": "views/explorer.py",
    "probe_curve": "views/probes.py",
    "similarity_heatmap": "views/compare.py",
    "probe_depth_curves": "views/compare.py",
    "geometry_curves": "views/geometry.py",
    "trajectory": "views/trajectory.py",
    "curvature_by_layer": "views/trajectory.py",
    "lens_heatmap": "views/lens.py",
    "kl_curve": "views/lens.py",
    "sae_training_curves": "views/sae_train.py",
    "sae_feature_map": "views/sae_gallery.py",
    "sae_density_histogram": "views/sae_gallery.py",
    "sae_activation_histogram": "views/sae_gallery.py",
    "sae_label_association": "views/sae_gallery.py",
    "sae_logit_effects": "views/sae_gallery.py",
    "sae_feature_matching": "views/sae_match.py",
    "dynamics_heatmap": "views/dynamics.py",  # compared in tests/dashboard/test_dynamics_pages.py
    "dynamics_curves": "views/dynamics.py",
    "convergence_curves": "views/dynamics.py",
    "checkpoint_map": "views/dynamics.py",
    "steering_continuations": "views/interventions.py",  # compared in tests/dashboard/test_interventions_pages.py
    "steering_readout": "views/interventions.py",
    "steering_kl": "views/interventions.py",
    "steering_tokens": "views/interventions.py",
    "erasure_accuracy": "views/interventions.py",
    "erasure_change": "views/interventions.py",
}


@pytest.fixture(params=KINDS)
def runs(request):
    """The runs of one bundled model kind (see conftest)."""
    return request.getfixturevalue(request.param)


def built(runs, figure: str, keys, **params):
    """The recipe's figure for a spec, in a fresh context (as a sidecar rebuilds it)."""
    return build_figure(figure_spec(figure, keys, **params), runs.store)


def test_registry__every_recipe_is_checked_against_its_page():
    assert set(figure_kinds()) == set(CHECKED)
    assert {name: RECIPES[name].page for name in CHECKED} == CHECKED


def test_explorer__map_with_neighbours_and_the_animation(runs, open_page):
    acts = runs.store.open_run(runs.main)
    layer = acts.layer_names[len(acts.layer_names) // 2]
    color_by = acts.label_columns[0]
    at = open_page("explorer.py", runs, **{state.RUN: runs.main, state.EXPLORER_LAYER: layer,
                                           state.Explorer.SELECTED: 3})
    expected = built(runs, "layer_map", [runs.main], layer=layer, method="pca", color_by=color_by,
                     title=f"{acts.model_name} · {layer} · PC map of {acts.dataset_name}", search="", selected=3,
                     k=10)
    assert_page_draws(charts(at)[state.Explorer.MAP], expected)
    next(t for t in at.toggle if t.label == "Animate through layers").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    expected = built(runs, "animated_layer_map", [runs.main], method="pca", color_by=color_by,
                     title=f"{acts.model_name} · PC maps across layers", layer=layer)
    assert_page_draws(charts(at)[state.Explorer.ANIMATION], expected)


def test_probes__one_curve_per_label(runs, open_page):
    acts = runs.store.open_run(runs.main)
    drawn = charts(open_page("probes.py", runs, **{state.RUN: runs.main}))
    columns = acts.label_columns[:2]  # the page's default selection
    assert sorted(drawn) == sorted(state.Probes.chart(c) for c in columns)
    for column in columns:
        expected = built(runs, "probe_curve", [runs.main], column=column,
                         title=f"{acts.model_name} on {acts.dataset_name}: probing {column}")
        assert_page_draws(drawn[state.Probes.chart(column)], expected)


def test_compare__heatmap_linked_maps_and_probe_curves(runs, open_page):
    a, b = runs.store.open_run(runs.main), runs.store.open_run(runs.partner)
    at = open_page("compare.py", runs, **{state.RUN: runs.main})
    next(s for s in at.selectbox if s.label == "Model B").set_value(runs.partner).run()
    button(at, f"Compute the probe curves for {a.label_columns[0]}").click().run()  # the curves are a click away
    assert not at.exception, [e.value for e in at.exception]
    assert next(s for s in at.selectbox if s.label == "Similarity").value == "linear_cka"
    drawn = charts(at)
    heatmap = built(runs, "similarity_heatmap", [a.key, b.key], metric="linear_cka", metric_params={})
    assert_page_draws(drawn[state.Compare.HEATMAP], heatmap)
    cell = heatmap.result.best_pair()[:2]  # the maps show the best pair until a cell is clicked
    for side, acts, layer in (("A", a, cell[0]), ("B", b, cell[1])):
        expected = built(runs, "layer_map", [acts.key], layer=layer, method="pca", color_by=a.label_columns[0],
                         title=f"{side}: {acts.model_name} · {layer}", highlight_rows=[], max_points=None,
                         layout={"dragmode": "lasso", "height": 480})
        assert_page_draws(drawn[state.Compare.map(side)], expected)
    expected = built(runs, "probe_depth_curves", [a.key, b.key], column=a.label_columns[0],
                     names=[f"A: {a.model_name}", f"B: {b.model_name}"])
    assert_page_draws(drawn[state.Compare.PROBE_CURVES], expected)


def test_geometry__default_curves(runs, open_page):
    acts = runs.store.open_run(runs.main)
    at = open_page("geometry.py", runs, **{state.RUN: runs.main})
    if any(b.label == "Compute geometry" for b in at.button):  # stored results (e.g. a report's) need no click
        button(at, "Compute geometry").click().run()
    assert not at.exception, [e.value for e in at.exception]
    drawn = charts(at)
    metrics = run_choice.geometry_metrics(acts.meta)  # the page's defaults for this run's pooling
    curves = [{"name": acts.model_name, "run": acts.key, "metrics": metrics, "options": GEOMETRY_OPTIONS}]
    for metric in metrics:
        expected = built(runs, "geometry_curves", [acts.key], curves=curves, metric=metric, relative_depth=True,
                         controls=[], title=f"{METRIC_TITLES[metric]} by layer · {acts.dataset_name}")
        assert_page_draws(drawn[state.Geometry.chart(metric)], expected)


def test_trajectory__path_and_curvature_with_the_band_over_inputs(runs, open_page):
    if runs.tokens is None:
        pytest.skip("image runs have no tokens: the trajectory recipes do not apply")
    acts = runs.store.open_run(runs.tokens)
    layer = acts.layer_names[len(acts.layer_names) // 2]  # the page's defaults: input 0, middle layer, signed
    at = open_page("trajectory.py", runs, **{state.RUN: runs.tokens})
    path = built(runs, "trajectory", [acts.key], layer=layer, index=0, variant="signed",
                 skip_first=bool(acts.meta["model"].get("is_causal_lm")),
                 title=f"{acts.model_name} · input 0 at {layer}")
    assert_page_draws(charts(at)[state.Trajectory.PATH], path)
    button(at, "Add the mean over all inputs").click().run()
    assert not at.exception, [e.value for e in at.exception]
    expected = built(runs, "curvature_by_layer", [acts.key], index=0, variant="signed", reference=True,
                     input_label="input 0", title="Curvature of input 0 by layer")
    assert_page_draws(charts(at)[state.Trajectory.CURVATURE], expected)


@pytest.mark.slow
def test_lens__heatmap_and_kl_curve_of_smollm2(smollm2_runs, open_page):
    at = open_page("lens.py", smollm2_runs, **{state.RUN: smollm2_runs.main})
    text = at.text_area[0].value
    button(at, "Run the logit lens").click().run()
    assert not at.exception, [e.value for e in at.exception]
    drawn = charts(at)
    kl = built(smollm2_runs, "kl_curve", [], model="smollm2", text=text, top_k=5)
    assert_page_draws(drawn[state.Lens.KL], kl)
    heatmap = built(smollm2_runs, "lens_heatmap", [], model="smollm2", text=text, top_k=5,
                    positions=[0, kl.result.n_positions])
    assert_page_draws(drawn[state.Lens.HEATMAP], heatmap)


# ----- SAEs ----------------------------------------------------------------------------------------
def test_train_sae__training_curves_of_the_chosen_sae(minilm_sae_runs, open_page):
    runs, key = minilm_sae_runs, minilm_sae_runs.saes[0]
    at = open_page("sae_train.py", runs, **{state.RUN: runs.tokens, state.SaeTrain.DETAILS: key})
    assert_page_draws(charts(at)[state.SaeTrain.HISTORY], built(runs, "sae_training_curves", [runs.tokens], sae=key))


def test_gallery__map_density_and_the_cards_of_a_minilm_sae(minilm_sae_runs, open_page):
    runs, key = minilm_sae_runs, minilm_sae_runs.saes[0]
    at = open_page("sae_gallery.py", runs, **{state.SAE: key})
    drawn = charts(at)
    selected = int(at.session_state[state.Gallery.OPEN])
    title = drawn[state.Gallery.MAP]["layout"]["title"]["text"]
    method = "umap" if "UMAP" in title else "pca"  # UMAP once its warm-up has run in this process
    expected = built(runs, "sae_feature_map", [runs.tokens], sae=key, method=method, selected=selected)
    assert_page_draws(drawn[state.Gallery.MAP], expected)
    assert_page_draws(drawn[state.Gallery.DENSITY], built(runs, "sae_density_histogram", [runs.tokens], sae=key))
    card = f"full__{key}_{selected}"
    expected = built(runs, "sae_activation_histogram", [runs.tokens], sae=key, feature=selected)
    assert_page_draws(drawn[state.feature_card_chart("hist", card)], expected)
    column = "topic"  # categorical: the open card draws its association
    expected = built(runs, "sae_label_association", [runs.tokens], sae=key, feature=selected, column=column)
    assert_page_draws(drawn[state.feature_card_chart(f"assoc_{column}", card)], expected)
    grid = [name for name in drawn if name.startswith(f"hist_card__{key}_")]
    assert grid
    for name in grid:  # the grid's smaller cards draw the same histogram
        feature = int(name.rsplit("_", 1)[1])
        expected = built(runs, "sae_activation_histogram", [runs.tokens], sae=key, feature=feature, height=180)
        assert_page_draws(drawn[name], expected)


def test_match__paired_correlations_of_two_minilm_saes(minilm_sae_runs, open_page):
    runs, (a, b) = minilm_sae_runs, minilm_sae_runs.saes
    at = open_page("sae_match.py", runs, **{state.Matching.A: a, state.Matching.B: b})
    drawn = charts(at)
    assert_page_draws(drawn[state.Matching.HISTOGRAM], built(runs, "sae_feature_matching", [runs.tokens], saes=[a, b]))
    cards = [name for name in drawn if name.startswith("hist_card_")]
    assert len(cards) == 2  # the compared pair, side by side
    for name in cards:
        sae, feature = name.rsplit("_", 2)[1:]
        expected = built(runs, "sae_activation_histogram", [runs.tokens], sae=sae, feature=int(feature), height=180)
        assert_page_draws(drawn[name], expected)


@pytest.mark.slow
def test_gallery__logit_effects_of_a_smollm2_sae(smollm2_sae_runs, open_page):
    runs, key = smollm2_sae_runs, smollm2_sae_runs.saes[0]
    at = open_page("sae_gallery.py", runs, **{state.SAE: key})
    selected = int(at.session_state[state.Gallery.OPEN])
    expected = built(runs, "sae_logit_effects", [runs.tokens], sae=key, feature=selected, n=10)
    assert_page_draws(charts(at)[state.feature_card_chart("logits", f"full__{key}_{selected}")], expected)
