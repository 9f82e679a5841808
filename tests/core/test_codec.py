"""The store's one codec: result dataclasses round-trip through .npy + JSON, counted hits and misses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from core import codec
from core.store import Store


@dataclass(frozen=True)
class Inner:
    name: str
    values: np.ndarray
    score: float = math.nan


@dataclass(frozen=True)
class Outer:
    layer_names: tuple[str, ...]
    matrix: np.ndarray
    per_metric: dict[str, np.ndarray]
    inners: dict[str, Inner]
    reasons: tuple[tuple[str, str], ...]
    best: Inner | None
    params: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


def _example() -> Outer:
    rng = np.random.default_rng(0)
    return Outer(
        layer_names=("embed", "block/0"),  # a '/' in a label must not become a path
        matrix=rng.normal(size=(2, 3)).astype(np.float32),
        per_metric={"curvature": np.arange(3.0), "label with spaces/and slash": np.array([np.nan, 1.0])},
        inners={"topic": Inner("topic", np.array(["a", "b"])), "n": Inner("n", np.zeros(2, np.int64), 0.5)},
        reasons=(("block/0", "too few rows"),),
        best=Inner("best", np.ones(1)),
        params={"k": 10, "layers": ["embed"], "alpha": 1.5},
    )


def _assert_same(a: Outer, b: Outer) -> None:
    assert a.layer_names == b.layer_names and isinstance(b.layer_names, tuple)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert b.matrix.dtype == np.float32
    assert a.per_metric.keys() == b.per_metric.keys()
    for key in a.per_metric:
        np.testing.assert_array_equal(a.per_metric[key], b.per_metric[key])
    assert b.inners["topic"].values.tolist() == ["a", "b"]
    assert math.isnan(b.inners["topic"].score) and b.inners["n"].score == 0.5
    assert b.reasons == (("block/0", "too few rows"),) and isinstance(b.reasons[0], tuple)
    assert isinstance(b.best, Inner) and b.best.values.tolist() == [1.0]
    assert b.params == a.params and b.note is None


def test_encode_decode__round_trips_nested_results():
    arrays, meta = codec.encode(_example())
    assert all(name.startswith("a") and "/" not in name for name in arrays)
    _assert_same(_example(), codec.decode(Outer, arrays, meta))


def test_decode__refuses_another_result_type():
    arrays, meta = codec.encode(Inner("x", np.zeros(1)))
    with pytest.raises(codec.CodecError, match="Inner"):
        codec.decode(Outer, arrays, meta)


def test_encode__refuses_object_arrays():
    with pytest.raises(TypeError, match="object"):
        codec.encode(Inner("x", np.array([{}, []], dtype=object)))


def test_store_cached__computes_once_then_reads_and_counts(tmp_path):
    store = Store(tmp_path)
    calls = []

    def compute() -> Outer:
        calls.append(1)
        return _example()

    first = store.cached("demo", {"run": "r1"}, compute, Outer)
    second = store.cached("demo", {"run": "r1"}, compute, Outer)
    _assert_same(first, second)
    assert len(calls) == 1
    assert store.counts["demo", "miss"] == 1 and store.counts["demo", "hit"] == 1
    # a fresh process (new Store) reads the same entry
    assert Store(tmp_path).lookup("demo", {"run": "r1"}, Outer) is not None
    assert Store(tmp_path).lookup("demo", {"run": "other"}, Outer) is None


def test_store_lookup__older_layout_goes_through_its_legacy_reader(tmp_path):
    @dataclass(frozen=True)
    class Old:
        values: np.ndarray
        name: str

    store = Store(tmp_path)
    store.save_result("old", {"run": "r"}, {"values": np.arange(3)}, {"label": "x"})
    assert store.lookup("old", {"run": "r"}, Old) is None  # no reader: treated as a miss
    codec.register_legacy(Old, lambda arrays, meta: Old(np.array(arrays["values"]), meta["label"]))
    old = store.lookup("old", {"run": "r"}, Old)
    assert old.name == "x" and old.values.tolist() == [0, 1, 2]


def test_store_write_entry__is_listed_opened_and_deleted(tmp_path):
    store = Store(tmp_path)
    with store.write_entry("things", "k1", {"label": "first"}) as tmp:
        (tmp / "weights.bin").write_bytes(b"abc")
    with pytest.raises(RuntimeError):
        with store.write_entry("things", "k2", {"label": "broken"}) as tmp:
            (tmp / "weights.bin").write_bytes(b"half")
            raise RuntimeError("interrupted")
    entries = store.list_entries("things")
    assert [e["key"] for e in entries] == ["k1"] and entries[0]["label"] == "first"
    folder, meta = store.open_entry("things", "k1")
    assert (folder / "weights.bin").read_bytes() == b"abc" and "weights.bin" in meta["checksums"]
    store.delete_entry("things", "k1")
    assert store.list_entries("things") == []
    assert not list((tmp_path / "results" / "things").iterdir())  # nothing half-written left
