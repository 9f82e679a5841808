"""The store: keys, atomic results, listing."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import LayerscopeError
from core.store import Store, make_key


def test_make_key__order_independent_and_sensitive_to_values():
    assert make_key({"a": 1, "b": [1, 2]}) == make_key({"b": [1, 2], "a": 1})
    assert make_key({"a": 1}) != make_key({"a": 2})


def test_cached_result__computes_once_and_survives_restart(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"values": np.arange(5.0)}, {"note": "x"}

    store = Store(tmp_path)
    store.cached_result("demo", {"run": "k", "p": 1}, compute)
    again, meta2 = Store(tmp_path).cached_result("demo", {"run": "k", "p": 1}, compute)
    assert calls == [1] and meta2["note"] == "x"
    np.testing.assert_array_equal(again["values"], np.arange(5.0))
    assert not list(tmp_path.rglob("*.tmp"))


def test_load_result__damaged_result_is_recomputed(tmp_path):
    store = Store(tmp_path)
    folder = store.save_result("demo", {"p": 1}, {"v": np.ones(100)})
    path = folder / "v.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    assert store.load_result("demo", {"p": 1}) is None


def test_list_runs__empty_workspace(tmp_path):
    assert Store(tmp_path / "nothing").list_runs() == []


# ----- a run's name: display only, editable, never part of its key --------------------------------------
def _small_run(store, minilm):
    import core

    data = core.load_dataset("demo:sentences", limit=4)
    return core.extract(minilm, data, layers=["encoder.layer.0"], store=store)


def test_rename_run__name_is_kept_in_meta_and_the_key_and_files_stay(tmp_path, minilm):
    store = Store(tmp_path / "ws")
    acts = _small_run(store, minilm)
    assert acts.name is None and "name" not in store.list_runs()[0]  # runs start without a name
    before = {p.name: p.read_bytes() for p in (acts.path / "layers").iterdir()}
    store.rename_run(acts.key, "  baseline  ")
    reopened = Store(tmp_path / "ws").open_run(acts.key)  # checksums still verify
    assert reopened.name == "baseline" and reopened.key == acts.key
    assert [(r["key"], r["name"]) for r in store.list_runs()] == [(acts.key, "baseline")]
    assert {p.name: p.read_bytes() for p in (acts.path / "layers").iterdir()} == before
    assert _small_run(store, minilm).key == acts.key  # the same request is still read from the store
    store.rename_run(acts.key, "seed 1")
    assert store.open_run(acts.key).name == "seed 1"
    store.rename_run(acts.key, "   ")
    assert store.open_run(acts.key).name is None and "name" not in store.list_runs()[0]


@pytest.mark.parametrize(("name", "message"), [("x" * 81, "at most 80"), ("two\nlines", "one line"),
                                               (3, "must be text")])
def test_rename_run__refuses_a_name_that_is_not_one_short_line(tmp_path, minilm, name, message):
    store = Store(tmp_path / "ws")
    acts = _small_run(store, minilm)
    with pytest.raises(LayerscopeError, match=f"name=.*{message}"):
        store.rename_run(acts.key, name)
    assert store.open_run(acts.key).name is None


def test_rename_run__unknown_run_says_how_to_list_them(tmp_path):
    with pytest.raises(LayerscopeError, match="'nope' is not in the workspace.*python -m core ls"):
        Store(tmp_path).rename_run("nope", "x")
