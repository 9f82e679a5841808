"""Writing a report: every planned figure with its tables and sidecar, index.html, report.json and a zip."""

from __future__ import annotations

import json
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.diskspace import DiskFullError, reporting_full_disk
from core.errors import LayerscopeError
from core.export import IMAGE_FORMATS, ensure_writable_dir, export_figure, images_unavailable_reason, slug
from core.export.sidecar import run_provenance
from core.progress import Progress
from core.recipes import Context, build_figure
from core.report.index_html import index_html
from core.report.plan import plan_report
from core.store import atomic_dir


@dataclass
class ReportResult:
    """A written report: its folder, zip, figures (sidecars) and what could not be drawn."""

    path: Path
    zip_path: Path | None
    figures: list[dict[str, Any]]  # sidecars, in index order
    not_drawn: list[dict[str, Any]]  # {"figure", "title", "reason"}
    seconds: float
    notes: list[str] = field(default_factory=list)


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LayerscopeError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise LayerscopeError(
            f"{out} exists and is not a Layerscope report (no report.json); choose a new folder so nothing "
            "of yours is overwritten"
        )
    ensure_writable_dir(out.parent)


def _zip_folder(folder: Path, target: Path, arcroot: str) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stored = path.suffix in (".png", ".parquet")  # already compressed
                archive.write(path, f"{arcroot}/{path.relative_to(folder)}",
                              compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


def _manifest(title, runs, figures, not_drawn, notes, publication, scale) -> dict[str, Any]:
    from core import __version__

    return {
        "kind": "layerscope.report",
        "title": title,
        "layerscope_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "style": {"publication": publication, "png_scale": scale},
        "runs": runs,
        "figures": [{"name": s["name"], "title": s["title"], "caption": s["caption"], "figure": s["spec"]["figure"],
                     "sidecar": f"figures/{s['name']}.json",
                     "files": {fmt: f"figures/{f['path']}" for fmt, f in s["files"].items()},
                     "notes": s["notes"], "skipped": s.get("skipped", {})} for s in figures],
        "not_drawn": not_drawn,
        "notes": notes,
    }


def write_report(
    store,
    run_keys: Sequence[str],
    out: str | os.PathLike,
    *,
    publication: bool = True,
    formats: Sequence[str] = ("png", "svg", "html"),
    tables: Sequence[str] = ("csv", "parquet"),
    scale: float = 2,
    make_zip: bool = True,
    specs: Sequence[Mapping[str, Any]] | None = None,
    load_model: Callable[[str], Any] | None = None,
    progress: Progress | None = None,
    title: str = "Layerscope report",
) -> ReportResult:
    """Write every figure of `run_keys` (see plan_report) with tables, sidecars and index.html.

    The report is built in a temporary folder beside `out` and renamed into place only when
    complete (likewise `out`.zip), so an interrupted report never looks finished. A figure
    that cannot be built is listed under "Not drawn" with the reason; without a browser the
    images are left out (HTML and tables are still written) and the index says so.
    """
    started = time.perf_counter()
    out = Path(out).expanduser().resolve()
    _check_target(out)
    specs = list(specs) if specs is not None else plan_report(store, run_keys)
    progress = progress or (lambda done, total, message: None)
    context = Context(store, load_model=load_model)  # each run opened and each result computed once
    zip_tmp = out.with_name(f".{out.name}.zip.{uuid.uuid4().hex}.tmp")  # the temporary-file name `verify` knows
    figures, not_drawn, notes = [], [], []
    try:
        with reporting_full_disk(out.parent, f"writing the report {out.name}"), atomic_dir(out) as tmp:
            folder = ensure_writable_dir(tmp / "figures")
            total = len(specs)
            for i, spec in enumerate(specs):
                label = (spec.get("params") or {}).get("title") or spec.get("figure")
                progress(i, total, f"figure {i + 1}/{total}: {label}")
                try:
                    built = build_figure(spec, store, context=context)
                except DiskFullError:
                    raise  # not a figure that cannot be drawn: the report stops
                except LayerscopeError as err:
                    not_drawn.append({"figure": spec.get("figure"), "title": label, "reason": str(err)})
                    continue
                sidecar = export_figure(
                    built.figure, folder, name=f"{len(figures) + 1:02d}-{slug(built.name, max_length=60)}",
                    spec=spec, store=store, formats=[*formats, *tables], table=built.table, analysis=built.analysis,
                    caption=built.caption, publication=publication, scale=scale,
                )
                figures.append(sidecar)
            if not figures:
                reasons = "; ".join(f"{d['title']}: {d['reason']}" for d in not_drawn[:3])
                raise LayerscopeError(f"no figure could be drawn for this report ({reasons})")
            if {fmt for s in figures for fmt in s.get("skipped", {})} & set(IMAGE_FORMATS):
                notes.append(images_unavailable_reason() or "some images could not be rendered")
            progress(total, total, "writing index.html")
            runs = run_provenance(store, dict.fromkeys(k for s in specs for k in s.get("runs", [])))
            manifest = _manifest(title, runs, figures, not_drawn, notes, publication, scale)
            (tmp / "index.html").write_text(index_html(manifest))
            manifest["seconds"] = round(time.perf_counter() - started, 2)
            (tmp / "report.json").write_text(json.dumps(manifest, indent=1))  # last: marks the folder complete
            if make_zip:
                progress(total, total, "zipping")
                _zip_folder(tmp, zip_tmp, out.name)
        zip_path = None
        if make_zip:
            zip_path = out.with_name(f"{out.name}.zip")
            os.replace(zip_tmp, zip_path)
    except BaseException:
        zip_tmp.unlink(missing_ok=True)
        raise
    return ReportResult(out, zip_path, figures, not_drawn, time.perf_counter() - started, notes)
