"""The store: keys, atomic results, listing."""

from __future__ import annotations

import numpy as np

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
    arrays, meta = store.cached_result("demo", {"run": "k", "p": 1}, compute)
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
