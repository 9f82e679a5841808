"""AppTest tests of what Train SAE and the Feature gallery say about dead latents and an outsized token budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

streamlit = pytest.importorskip("streamlit")

from apptest_helpers import button

import core
from core.analysis import features as ft
from core.analysis.sae import SAEConfig, train_sae_on_run
from core.analysis.sae.batches import training_split_tokens
from core.store import Store

PAGES = ("sae_train.py", "sae_gallery.py", "sae_match.py", "workspace.py")
LAYER = "encoder.layer.3"
TINY = {"expansion": 1.0, "k": 8, "batch_size": 128, "training_tokens": 128 * 20, "lr": 2e-3, "dead_window": 1000}


@pytest.fixture(scope="module")
def sae_workspace(tmp_path_factory, minilm) -> tuple[Path, core.Activations, object]:
    """A minilm tokens run of 60 demo sentences with one tiny SAE and its feature statistics: (root, run, SAE)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny SAE steps are faster on one thread on a busy machine
    try:
        root = tmp_path_factory.mktemp("sae_details")
        store = Store(root)
        acts = core.extract(minilm, core.load_dataset("demo:sentences", limit=60), layers=[LAYER], pooling="tokens",
                            store=store)
        entry = train_sae_on_run(acts, LAYER, SAEConfig(**TINY), store=store)
        ft.feature_stats_cached(entry, acts, store)
    finally:
        torch.set_num_threads(before)
    return root, acts, entry


def _metric(at, prefix: str):
    found = [m for m in at.metric if m.label.startswith(prefix)]
    assert found, [m.label for m in at.metric]
    return found[0]


def test_dead_latents__both_pages_name_their_tokens_and_give_count_and_share(page_app, sae_workspace):
    root, acts, entry = sae_workspace
    stats = ft.feature_stats_cached(entry, acts, Store(root))
    ev = entry.evaluation

    train = page_app("sae_train.py", root, PAGES)
    train.run()
    assert not train.exception
    held = _metric(train, "Dead on")
    assert held.label == "Dead on held-out tokens"
    assert held.value == f"{ev.n_dead:,} ({ev.dead_share:.1%})"
    assert f"{ev.n_tokens:,} held-out tokens" in held.help and "feature gallery" in held.help

    gallery = page_app("sae_gallery.py", root, PAGES)
    gallery.run()
    assert not gallery.exception
    whole = _metric(gallery, "Dead on")
    n_dead = int(stats.dead.sum())
    assert whole.label == "Dead on all the run's tokens"
    assert whole.value == f"{n_dead:,} ({n_dead / stats.n_features:.1%})"
    assert f"{stats.n_tokens:,} tokens" in whole.help and f"{ev.n_tokens:,} held-out tokens" in whole.help
    assert stats.n_tokens > ev.n_tokens and n_dead <= ev.n_dead  # more tokens seen: never more dead latents


def test_train__says_how_often_a_large_budget_repeats_the_training_split(page_app, sae_workspace):
    root, acts, _ = sae_workspace
    default = SAEConfig()  # 1M training tokens: far more than a demo run holds
    split = training_split_tokens(acts, held_out_fraction=default.held_out_fraction, seed=default.seed,
                                  exclude_first_token=default.exclude_first_token)
    at = page_app("sae_train.py", root, PAGES)
    at.run()
    assert not at.exception
    notes = [i.value for i in at.info if "training split" in i.value]
    assert len(notes) == 1, [i.value for i in at.info]
    epochs = default.total_steps * default.batch_size / split
    assert f"holds {split:,} tokens" in notes[0] and f"about {epochs:,.1f} times" in notes[0]

    at.number_input(key="sae_expansion").set_value(1.0)
    at.number_input(key="sae_k").set_value(4)
    at.number_input(key="sae_batch").set_value(128)
    at.number_input(key="sae_tokens").set_value(256)  # two batches: less than the split
    button(at, "Train SAE").click().run()
    assert not at.exception
    assert at.success, [e.value for e in at.error]
    assert not [i for i in at.info if "training split" in i.value]
