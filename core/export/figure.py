"""One figure to the bytes of each format, and to files in a folder with its sidecar.

    from core import export
    files = export.export_figure(fig, folder, name="probe_topic", spec=spec, store=store)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core.diskspace import reporting_full_disk
from core.errors import LayerscopeError
from core.export.files import ensure_writable_dir, safe_child, slug
from core.export.formats import IMAGE_FORMATS, TABLE_FORMATS, check_format, image_size
from core.export.publication import publication_style
from core.export.render import ImageRenderer, renderer
from core.export.sidecar import make_sidecar
from core.export.static import static_figure
from core.export.tables import figure_table, table_bytes
from core.store import write_bytes_atomic
from core.validation import check_number


def html_bytes(fig: go.Figure, *, publication: bool) -> bytes:
    """A standalone HTML page (plotly.js inline, no network), toolbar hidden in the publication style."""
    import plotly.io as pio

    config = {"displaylogo": False, "responsive": True}
    if publication:
        config["displayModeBar"] = False
    return pio.to_html(fig, include_plotlyjs=True, full_html=True, config=config).encode()



def figure_bytes(
    fig: go.Figure,
    fmt: str,
    *,
    scale: float = 2,
    publication: bool = True,
    table: pd.DataFrame | None = None,
    styled: bool = False,
    image_renderer: ImageRenderer | None = None,
) -> tuple[bytes, dict[str, Any] | None]:
    """The bytes of one export format, and a note when the format changed the figure (downsampling).

    fig: as drawn on screen; the publication style is applied here unless `styled` says it was.
    table: the data behind the figure for CSV/Parquet (default: `figure_table(fig)`).
    Raises BrowserMissingError for PNG/SVG/PDF when no browser is available.
    """
    fmt = check_format(fmt)
    if fmt in TABLE_FORMATS:
        return table_bytes(figure_table(fig) if table is None else table, fmt), None
    # the dashboard offers SCALES; any factor up to 8 works
    scale = check_number("scale", scale, low=0, high=8, low_open=True)
    shown = publication_style(fig) if publication and not styled else fig
    if fmt == "html":
        return html_bytes(shown, publication=publication), None
    static, note = static_figure(shown, fmt)
    width, height = image_size(shown)
    scale = scale if fmt == "png" else 1  # SVG and PDF are vector: scale only changes their nominal size
    data = (image_renderer or renderer()).render(static, fmt, width=width, height=height, scale=scale)
    return data, note



def export_figure(
    fig: go.Figure,
    folder: str | os.PathLike,
    *,
    name: str,
    spec: Mapping[str, Any] | None = None,
    store=None,
    formats: Sequence[str] = ("png", "svg", "html", "csv", "parquet"),
    table: pd.DataFrame | None = None,
    analysis: Mapping[str, Any] | None = None,
    caption: str = "",
    publication: bool = True,
    scale: float = 2,
    image_renderer: ImageRenderer | None = None,
) -> dict[str, Any]:
    """Write `fig` in each format plus `<name>.json` (the sidecar) into `folder`; returns the sidecar.

    Every file is written atomically and the sidecar last (an older sidecar of the same name is
    removed first), so a sidecar lists exactly the files beside it. Image formats that cannot be
    made (no browser, or a render that failed) are listed under sidecar["skipped"] with the
    reason; the other formats are still written.
    """
    formats = [check_format(f) for f in dict.fromkeys(formats)]
    folder = ensure_writable_dir(folder)
    stem = slug(name)
    sidecar_path = safe_child(folder, f"{stem}.json")
    sidecar_path.unlink(missing_ok=True)  # an interrupted export leaves no sidecar naming files it did not write
    sidecar = make_sidecar(
        fig, name=stem, spec=spec, store=store, analysis=analysis, caption=caption, publication=publication, scale=scale
    )
    styled = publication_style(fig) if publication else fig
    table = figure_table(fig) if table is None else table
    skipped: dict[str, str] = {}
    for fmt in formats:
        try:
            data, note = figure_bytes(
                styled, fmt, scale=scale, publication=publication, table=table, styled=True,
                image_renderer=image_renderer,
            )
        except LayerscopeError as err:  # no browser, or it failed on this figure: the other formats still go
            if fmt not in IMAGE_FORMATS:
                raise
            skipped[fmt] = str(err)
            continue
        path = safe_child(folder, f"{stem}.{fmt}")
        with reporting_full_disk(folder, f"exporting {path.name}", len(data)):
            write_bytes_atomic(path, data)
        sidecar["files"][fmt] = {"path": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if note:
            sidecar["notes"][fmt] = note
    if skipped:
        sidecar["skipped"] = skipped
    data = json.dumps(sidecar, indent=1).encode()
    with reporting_full_disk(folder, f"exporting {sidecar_path.name}", len(data)):
        write_bytes_atomic(sidecar_path, data)
    return sidecar

