"""Regenerating figures from their sidecars, extracting runs again where the workspace lost them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import LayerscopeError
from core.export import data_fingerprint, export_figure, read_sidecar
from core.recipes import build_figure
from core.runs import is_untrained

RUN_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")  # a run folder's name, never a path


@dataclass
class Regenerated:
    """One figure regenerated from its sidecar."""

    sidecar: Path  # the sidecar read
    written: dict[str, Any]  # the new sidecar (files written beside it)
    folder: Path  # where the files went
    matches: bool  # the regenerated figure's data equals the exported figure's
    warnings: list[str] = field(default_factory=list)


def find_sidecars(path: str | os.PathLike) -> list[Path]:
    """The sidecar itself, or every figure sidecar under a folder (a report, an exports folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = []
        for candidate in sorted(path.rglob("*.json")):
            if "regenerated" in candidate.relative_to(path).parts[:-1]:
                continue
            try:
                if json.loads(candidate.read_text()).get("kind") == "layerscope.figure":
                    found.append(candidate)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                continue
        if not found:
            raise LayerscopeError(f"{path} holds no Layerscope figure sidecars (*.json with kind 'layerscope.figure')")
        return found
    return [path]


def _reextract(store, run: Mapping[str, Any], load_model: Callable[[str], Any] | None) -> str:
    """Extract a run described by a sidecar again; its key, or LayerscopeError saying why it cannot be."""
    import core

    what = f"run {run['key']} ({run['model']['name']} on {run['dataset']['name']}, pooling {run['pooling']})"
    if is_untrained(run):
        raise LayerscopeError(f"{what} is not in the workspace {store.root} and is an untrained twin; "
                              "extract it again on the Geometry or Compare page, then regenerate")
    try:
        model = load_model(run["model"]["name"]) if load_model else core.load_model(run["model"]["name"],
                                                                                      workspace=store.root)
        if model.weights_hash != run["model"].get("weights"):
            raise LayerscopeError(f"model {run['model']['name']!r} now has different weights "
                                  f"({model.weights_hash[:12]} instead of {str(run['model'].get('weights'))[:12]})")
        info = run["dataset"]
        dataset = core.load_dataset(info["name"], text_column=info.get("text_column"),
                                    label_columns=info.get("label_columns"))
        if len(dataset) > info["n_inputs"]:
            dataset = core.load_dataset(info["name"], text_column=info.get("text_column"),
                                        label_columns=info.get("label_columns"), limit=info["n_inputs"])
        if dataset.fingerprint != info.get("fingerprint"):
            raise LayerscopeError(f"dataset {info['name']!r} has changed since (fingerprint {dataset.fingerprint[:12]} "
                                  f"instead of {str(info.get('fingerprint'))[:12]})")
        acts = core.extract(model, dataset, layers=run["layers"], pooling=run["pooling"], dtype=run.get("dtype"),
                            max_length=run.get("max_length"), store=store)
    except LayerscopeError as err:
        raise LayerscopeError(
            f"{what} is not in the workspace {store.root} and cannot be extracted again: {err}"
        ) from None
    return acts.key


def _check_run_keys(path: Path, spec: Mapping[str, Any], sidecar: Mapping[str, Any]) -> None:
    """Run keys name folders in the workspace: one plain name each, never a path ('..', '/', absolute)."""
    runs = sidecar.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise LayerscopeError(f"{path.name}: 'runs' must be a list of run descriptions")
    keys = [*(spec.get("runs") or []), *(run.get("key") for run in runs)]
    for key in keys:
        if not isinstance(key, str) or not RUN_KEY.fullmatch(key):
            raise LayerscopeError(f"{path.name}: run key {key!r} is not a run key (letters, digits, '-' and '_'); "
                                  "the sidecar was changed or is damaged")


def regenerate(
    sidecar_path: str | os.PathLike,
    store,
    *,
    out: str | os.PathLike | None = None,
    formats: Sequence[str] | None = None,
    scale: float | None = None,
    extract_missing: bool = True,
    load_model: Callable[[str], Any] | None = None,
) -> Regenerated:
    """Rebuild one figure from its sidecar and write it (default: `<sidecar folder>/regenerated/`).

    A sidecar from another Layerscope version is regenerated with this one (a warning says
    so). A run no longer in the store is extracted again when its model and dataset can be
    loaded with the same weights hash and fingerprint (`extract_missing`); otherwise
    LayerscopeError says what cannot be regenerated and why.
    """
    from core import __version__

    path = Path(sidecar_path).expanduser()
    sidecar = read_sidecar(path)
    warnings = []
    if sidecar.get("layerscope_version") != __version__:
        warnings.append(f"{path.name} was made with Layerscope {sidecar.get('layerscope_version')}; "
                        f"regenerating with {__version__} (results of a changed analysis may differ)")
    spec = sidecar.get("spec") or {}
    if not sidecar.get("regenerable") or not spec.get("figure"):
        raise LayerscopeError(f"{path.name} cannot be regenerated: it was exported without a figure spec "
                              "(its files and provenance are all there is)")
    _check_run_keys(path, spec, sidecar)
    text = json.dumps(spec)
    for run in sidecar.get("runs", []):
        if run.get("missing") or store.has_run(run["key"]):
            continue
        if not extract_missing:
            raise LayerscopeError(f"{path.name} cannot be regenerated: run {run['key']} is not in the workspace "
                                  f"{store.root}")
        key = _reextract(store, run, load_model)
        if key != run["key"]:
            warnings.append(f"run {run['key']} was extracted again as {key}")
            text = text.replace(run["key"], key)
    spec = json.loads(text)
    missing = [k for k in spec.get("runs", []) if not store.has_run(k)]
    if missing:
        raise LayerscopeError(f"{path.name} cannot be regenerated: run(s) {', '.join(missing)} are not in the "
                              f"workspace {store.root}")
    built = build_figure(spec, store, load_model=load_model)
    matches = data_fingerprint(built.figure) == sidecar.get("data_sha256")
    if not matches:
        warnings.append(f"{path.name}: the regenerated figure's data differ from the exported figure's")
    style = sidecar.get("style", {})
    folder = Path(out).expanduser() if out is not None else path.parent / "regenerated"
    written = export_figure(
        built.figure, folder, name=sidecar.get("name") or path.stem, spec=spec, store=store,
        formats=formats or list(sidecar.get("files") or ()) or ("png", "svg", "html", "csv", "parquet"),
        table=built.table, analysis=built.analysis, caption=built.caption,
        publication=style.get("publication", True), scale=scale or style.get("png_scale", 2),
    )
    return Regenerated(path, written, folder, matches, warnings)
