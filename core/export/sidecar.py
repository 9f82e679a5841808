"""Figure specs and sidecars: what rebuilds a figure from the store, and where it came from.

A *figure spec* names a figure in the recipe registry (core.recipes) and everything needed
to rebuild it from the store::

    {"figure": "probe_curve", "runs": ["<run key>"], "params": {"column": "topic", "title": "..."}}

The sidecar written beside every export holds the spec plus provenance (model identity and
weights hash, dataset fingerprint, layers, pooling, metric and variant, parameters, seeds,
Layerscope version, date), so `python -m core figure --from <sidecar>` regenerates it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.errors import LayerscopeError
from core.export.formats import image_size

SIDECAR_KIND = "layerscope.figure"
SIDECAR_VERSION = 1


def figure_spec(figure: str | None, runs: Sequence[str] = (), **params: Any) -> dict[str, Any]:
    """{"figure", "runs", "params"}: what rebuilds a figure from the store (see core.recipes)."""
    return {"figure": figure, "runs": [str(r) for r in runs], "params": jsonable(params)}


def jsonable(value: Any) -> Any:
    """`value` with JSON types only: tuples as lists, numpy as Python numbers, NaN and inf as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def data_fingerprint(fig: go.Figure) -> str:
    """sha256 of the figure's traces (style-independent: taken before the publication style)."""
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(fig.to_plotly_json()["data"], cls=PlotlyJSONEncoder, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_provenance(store, keys: Iterable[str]) -> list[dict[str, Any]]:
    """Identity of each run: model and weights hash, dataset and fingerprint, layers, pooling, ..."""
    out = []
    for key in keys:
        meta_path = store.run_dir(key) / "meta.json"
        if not meta_path.is_file():
            out.append({"key": key, "missing": True})
            continue
        meta = json.loads(meta_path.read_text())
        out.append(
            {
                "key": key,
                "model": meta["model"],
                "dataset": {**meta["dataset"], "n_inputs": meta["n_inputs"]},
                "layers": meta["layers"],
                "pooling": meta["pooling"],
                "dtype": meta.get("dtype"),
                "max_length": meta.get("max_length"),
                "extracted_with": meta.get("layerscope_version"),
            }
        )
    return out


def _environment() -> dict[str, Any]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": platform.python_version()}
    for package in ("plotly", "kaleido", "numpy", "torch", "scikit-learn"):
        try:
            env[package] = version(package)
        except PackageNotFoundError:
            pass
    return env


def make_sidecar(
    fig: go.Figure,
    *,
    name: str,
    spec: Mapping[str, Any] | None,
    store=None,
    analysis: Mapping[str, Any] | None = None,
    caption: str = "",
    publication: bool = True,
    scale: float = 2,
) -> dict[str, Any]:
    """Everything needed to regenerate a figure, and where it came from (files are added by the writer)."""
    from core import __version__

    spec = dict(spec or figure_spec(None))
    width, height = image_size(fig)
    return {
        "kind": SIDECAR_KIND,
        "sidecar_version": SIDECAR_VERSION,
        "layerscope_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "name": name,
        "title": fig.layout.title.text or "",
        "caption": caption,
        "spec": jsonable(spec),
        "regenerable": bool(spec.get("figure")),
        "workspace": str(store.root) if store is not None else None,
        "runs": run_provenance(store, spec.get("runs", [])) if store is not None else [],
        "analysis": jsonable(dict(analysis or {})),
        "style": {"publication": publication, "png_scale": scale, "width": width, "height": height},
        "data_sha256": data_fingerprint(fig),
        "files": {},
        "notes": {},
        "environment": _environment(),
    }


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """A sidecar's JSON, checked to be one; LayerscopeError with the reason otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LayerscopeError(f"sidecar {str(path)!r} does not exist")
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LayerscopeError(f"{path} is not a readable JSON sidecar: {err}") from None
    if not isinstance(sidecar, dict) or sidecar.get("kind") != SIDECAR_KIND:
        raise LayerscopeError(f"{path} is not a Layerscope figure sidecar (no kind={SIDECAR_KIND!r})")
    version = sidecar.get("sidecar_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise LayerscopeError(f"{path}: sidecar_version={version!r} must be an integer (this Layerscope writes "
                              f"{SIDECAR_VERSION})")
    if version > SIDECAR_VERSION:
        raise LayerscopeError(
            f"{path} has sidecar format {sidecar['sidecar_version']}, newer than this Layerscope reads "
            f"({SIDECAR_VERSION}); upgrade Layerscope"
        )
    return sidecar


def sidecar_bytes(fig: go.Figure, **kwargs: Any) -> bytes:
    """A sidecar as JSON bytes for a download (no files listed)."""
    return json.dumps(make_sidecar(fig, **kwargs), indent=1).encode()
