"""Which runs Compare pairs with model A (dashboard/pairing.py), on run metadata alone."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import pairing


def run(key, model="minilm", *, pooling="mean", fingerprint="sentences", n=864, weights=None, layers=("l0", "l1")):
    """Run metadata as Store.list_runs gives it (the fields pairing reads)."""
    return {"key": key, "model": {"name": model, "weights": weights or f"w-{model}"}, "pooling": pooling,
            "dataset": {"fingerprint": fingerprint, "name": "demo:sentences"}, "n_inputs": n, "layers": list(layers),
            "max_length": 128}


def twin_of(trained, key="twin"):
    return {**run(key, f"{trained['model']['name']} (untrained, seed 0)", pooling=trained["pooling"],
                  weights="reinit0-abc", layers=trained["layers"]),
            "dataset": dict(trained["dataset"]), "n_inputs": trained["n_inputs"]}


def test_pair_runs__leaves_out_other_inputs_and_per_token_runs_with_reasons():
    a = run("a")
    runs = [a, run("cities", fingerprint="cities"), run("fewer", n=40), run("tok", pooling="tokens"),
            run("smol", "smollm2")]
    pairing_ = pairing.pair_runs(a, runs)
    assert [p["key"] for p in pairing_.partners] == ["smol"]
    assert pairing_.left_out == {"different inputs": 2, "per-token vs mean": 1}
    assert pairing_.summary() == "3 runs left out: different inputs (2), per-token vs mean (1)"


def test_pair_runs__pooling_per_token_runs_explicitly_pairs_them_with_mean_runs_by_input():
    a = run("a")
    tok = run("tok", "smollm2", pooling="tokens")
    pairing_ = pairing.pair_runs(a, [a, tok], pool_tokens=True)
    assert [p["key"] for p in pairing_.partners] == ["tok"]
    assert pairing_.rows(tok) == pairing.INPUT_ROWS
    assert pairing_.summary() == ""


def test_pair_runs__per_token_runs_pair_token_by_token_only_when_tokenised_alike():
    a = run("a", pooling="tokens")
    alike = run("twin", "minilm (untrained, seed 0)", pooling="tokens", weights="reinit0-x")
    other = run("smol", "smollm2", pooling="tokens")
    mean = run("mean", "smollm2")
    signatures = {"a": "bert-ids", "twin": "bert-ids", "smol": "llama-ids"}
    pairing_ = pairing.pair_runs(a, [a, alike, other, mean], tokenisations=signatures)
    assert [p["key"] for p in pairing_.partners] == ["twin"]
    assert pairing_.rows(alike) == pairing.TOKEN_ROWS
    assert pairing_.left_out == {"per-token, another tokenisation": 1, "mean vs per-token": 1}
    pooled = pairing.pair_runs(a, [a, alike, other, mean], pool_tokens=True, tokenisations=signatures)
    assert {p["key"] for p in pooled.partners} == {"twin", "smol", "mean"}  # all as each input's mean


def test_pair_runs__other_poolings_are_not_paired():
    a = run("a")
    last = run("last", "smollm2", pooling="last")
    assert pairing.why_not_comparable(a, last) == "last-token vs mean"
    assert pairing.pair_runs(a, [a, last]).partners == ()


def test_pair_runs__default_is_another_model_then_the_twin_never_model_a_itself():
    a = run("a")
    twin = twin_of(a)
    again = run("again", "minilm-copy", weights="w-minilm")  # the same weights under another name
    smol = run("smol", "smollm2")
    assert pairing.pair_runs(a, [again, twin, a, smol]).default == "smol"
    both = pairing.pair_runs(a, [again, twin, a])
    assert both.default == "twin" and both.twin["key"] == "twin"
    assert [p["key"] for p in both.partners] == ["twin", "again"]
    assert pairing.pair_runs(a, [a]).default is None  # nothing comparable: no default, not model A


def test_pair_runs__finds_the_twin_whatever_other_runs_exist():
    a = run("a")
    twin = twin_of(a)
    pairing_ = pairing.pair_runs(a, [run("smol", "smollm2"), a, run("x", fingerprint="other"), twin])
    assert pairing_.twin is not None and pairing_.twin["key"] == "twin"
    assert pairing.pair_runs(twin, [a, twin]).twin is None  # an untrained run has no twin of its own


def test_pair_to_open__a_first_visit_opens_on_two_models_preferring_the_demo_run():
    lone = run("lone", fingerprint="cities")
    a, smol = run("a"), run("smol", "smollm2")
    assert pairing.pair_to_open([lone, smol, a], None, demo="a") == "a"
    assert pairing.pair_to_open([lone, smol, a], None, demo="lone") == "smol"  # newest run with another model
    assert pairing.pair_to_open([twin_of(a), a], None) == "a"  # the untrained run is model B
    assert pairing.pair_to_open([lone], None) == "lone"
    assert pairing.pair_to_open([], None) is None


def test_pair_to_open__keeps_the_current_run_when_it_has_a_partner_else_the_most_like_it():
    a, smol = run("a"), run("smol", "smollm2")
    tokens = run("tok", pooling="tokens")
    other = run("other", "smollm2", fingerprint="cities")
    runs = [smol, other, tokens, a]
    assert pairing.pair_to_open(runs, "smol", demo="a") == "smol"
    assert pairing.pair_to_open(runs, "tok", demo="smol") == "a"  # minilm on the same inputs, mean-pooled
    assert pairing.pair_to_open(runs, "tok", pool_tokens=True) == "tok"  # pooled, it pairs with both
    assert pairing.pair_to_open(runs, "other") == "smol"  # no partner anywhere near: the same model elsewhere


class _Tokens:
    def __init__(self, offsets, ids):
        self.offsets, self.token_ids = np.asarray(offsets), np.asarray(ids)


@pytest.mark.parametrize(("other", "same"), [(([0, 2, 3], [5, 6, 7]), True), (([0, 1, 3], [5, 6, 7]), False),
                                             (([0, 2, 3], [5, 6, 8]), False)])
def test_token_signature__equal_only_for_the_same_ids_and_boundaries(other, same):
    assert (pairing.token_signature(_Tokens([0, 2, 3], [5, 6, 7])) == pairing.token_signature(_Tokens(*other))) == same
