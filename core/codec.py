"""One codec for every stored result: a dataclass <-> `.npy` arrays + JSON metadata.

`encode` walks a result dataclass: every numpy array becomes one `.npy` file (named
`a0`, `a1`, ... so that no user-chosen label ever becomes a file name), everything else
becomes JSON with the arrays referenced by name. `decode` rebuilds the dataclass from
its type hints (tuples stay tuples, NaN stays NaN, nested results and dicts of results
come back as they were). Nothing is pickled.

Results written before this codec existed have no `codec` marker in their metadata;
each result type registers a reader for that older layout with `register_legacy`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any, TypeVar

import numpy as np

CODEC_VERSION = 1
MARK = "codec"  # metadata key holding the codec version; absent in older entries

R = TypeVar("R")
_LEGACY: dict[type, Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], Any]] = {}


class CodecError(Exception):
    """Stored metadata that does not decode into the requested result type."""


def register_legacy(result_type: type[R], reader: Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], R]) -> None:
    """Read entries of `result_type` written in the layout used before the codec."""
    _LEGACY[result_type] = reader


# ----- encode ----------------------------------------------------------------------------
def encode(result: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, metadata) of a result dataclass, ready for `Store.save_result`."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        raise TypeError(f"encode takes a dataclass instance, got {type(result).__name__}")
    arrays: dict[str, np.ndarray] = {}
    fields = _encode(result, arrays)
    return arrays, {MARK: CODEC_VERSION, "type": type(result).__qualname__, "fields": fields}


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("result arrays of dtype object cannot be stored; store numbers or strings")
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"__array__": name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__fields__": {f.name: _encode(getattr(value, f.name), arrays)
                               for f in dataclasses.fields(value) if f.init}}
    if isinstance(value, Mapping):
        return {"__dict__": [[_plain(k), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays) for v in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a value of type {type(value).__name__} in a result")


# ----- decode ----------------------------------------------------------------------------
def decode(result_type: type[R], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> R:
    """The `result_type` stored as (arrays, meta); raises CodecError when it does not fit."""
    if MARK not in meta:
        reader = _LEGACY.get(result_type)
        if reader is None:
            raise CodecError(f"{result_type.__name__} entry has no {MARK!r} marker and no legacy reader")
        try:
            return reader(arrays, meta)
        except (KeyError, TypeError, ValueError) as err:
            raise CodecError(f"older {result_type.__name__} entry does not decode: {err!r}") from err
    if meta[MARK] != CODEC_VERSION or meta.get("type") != result_type.__qualname__:
        raise CodecError(f"entry holds {meta.get('type')!r} (codec {meta[MARK]}), not {result_type.__qualname__}")
    try:
        return _decode(result_type, meta["fields"], arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise CodecError(f"{result_type.__name__} entry does not decode: {err!r}") from err


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a hint naming a type only imported for type checking: resolve field by field
        module = vars(sys.modules.get(cls.__module__, types.ModuleType("_")))
        hints = {}
        for f in dataclasses.fields(cls):
            try:
                hints[f.name] = eval(f.type, module) if isinstance(f.type, str) else f.type  # noqa: S307
            except Exception:
                hints[f.name] = Any
        return hints


def _decode(hint: Any, value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        hint = options[0] if len(options) == 1 else Any
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(value, dict) and "__array__" in value:
        return np.array(arrays[value["__array__"]])
    if isinstance(value, dict) and "__fields__" in value:
        cls = hint if dataclasses.is_dataclass(hint) else None
        if cls is None:
            raise TypeError(f"stored fields {sorted(value['__fields__'])} but the type hint is {hint!r}")
        hints = _hints(cls)
        return cls(**{name: _decode(hints.get(name, Any), v, arrays) for name, v in value["__fields__"].items()})
    if isinstance(value, dict) and "__dict__" in value:
        key_hint, value_hint = args if origin in (dict, Mapping) and len(args) == 2 else (Any, Any)
        return {_decode(key_hint, k, arrays): _decode(value_hint, v, arrays) for k, v in value["__dict__"]}
    if isinstance(value, list):
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_decode(args[0], v, arrays) for v in value)
            if args and len(args) == len(value):
                return tuple(_decode(a, v, arrays) for a, v in zip(args, value))
            return tuple(_decode(Any, v, arrays) for v in value)
        item = args[0] if origin is list and args else Any
        return [_decode(item, v, arrays) for v in value]
    if hint is float and value is None:
        return math.nan
    if hint is float and isinstance(value, int):
        return float(value)
    return value
