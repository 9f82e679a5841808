"""Every figure with an Export control: `show_figure` draws the chart and an "Export" popover.

The popover offers PNG (scale 1-4), SVG, PDF, standalone HTML, the data as CSV / Parquet,
or all of them as a zip, with the publication style on or off, and the JSON sidecar that
regenerates the figure (`python -m core figure --from <sidecar>`). Bytes are built only
when a download is clicked (deferred download data). Every download also leaves the file
and its sidecar in the workspace's exports/figures/ folder, so any exported figure can be
regenerated later. Without Chrome/Chromium the image formats say so; the rest still work.
"""

from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import export, recipes
from core.errors import LayerscopeError
from dashboard import cached

logger = logging.getLogger(__name__)

FIGURES_FOLDER = "figures"  # per-figure downloads are also saved under <workspace>/exports/figures/
CHOICES = ("png", "svg", "pdf", "html", "csv", "parquet", "zip")
LABELS = {"png": "PNG", "svg": "SVG", "pdf": "PDF", "html": "HTML (interactive)", "csv": "CSV (data)",
          "parquet": "Parquet (data)", "zip": "All formats (.zip)"}


@st.cache_data(ttl=30, show_spinner=False)
def images_unavailable() -> str | None:
    """Why PNG/SVG/PDF cannot be made on this server (no browser), or None; re-checked every 30 s."""
    return export.images_unavailable_reason()


def build(figure: str, runs=(), **params: Any) -> recipes.BuiltFigure:
    """Figure `figure` of `runs` built by its recipe (core.recipes), as reports and sidecars rebuild it."""
    return recipes.build(cached.recipe_context(), figure, runs, **params)


class PreparedExport:
    """One figure's export, built on demand (in the download's own thread, without Streamlit calls)."""

    def __init__(self, fig: go.Figure, *, name: str, spec: dict, data: pd.DataFrame | None,
                 built: recipes.BuiltFigure | None = None) -> None:
        self.fig = fig
        self.stem = export.slug(name)
        self.spec = spec
        self.data = data
        self._built: recipes.BuiltFigure | None | bool = False if built is None else built

    def _rebuilt(self) -> recipes.BuiltFigure | None:
        """The figure rebuilt from its spec through the store: its table and analysis provenance."""
        if self._built is False:
            try:
                self._built = recipes.build_figure(self.spec, context=cached.recipe_context())
            except Exception as err:  # the export still works from the figure itself  # noqa: BLE001
                logger.warning("could not rebuild %s from its spec: %s", self.spec.get("figure"), err)
                self._built = None
        return self._built

    def _parts(self) -> dict[str, Any]:
        built = self._rebuilt() if self.spec.get("figure") else None
        table = self.data if self.data is not None else (built.table if built else None)
        return {"table": table, "analysis": built.analysis if built else {}, "caption": built.caption if built else ""}

    def write(self, formats, *, publication: bool, scale: float, folder: Path | None = None) -> tuple[Path, dict]:
        """Write `formats` + sidecar into `folder` (default exports/figures/); returns (folder, sidecar)."""
        store = cached.store()
        folder = folder or export.export_folder(store, FIGURES_FOLDER)
        sidecar = export.export_figure(self.fig, folder, name=self.stem, spec=self.spec, store=store, formats=formats,
                                       publication=publication, scale=scale, **self._parts())
        return folder, sidecar

    def download(self, fmt: str, *, publication: bool, scale: float) -> bytes:
        """The bytes of one format (or a zip of all), saved with its sidecar under exports/figures/ too."""
        formats = export.FORMATS if fmt == "zip" else (fmt,)
        try:
            folder, sidecar = self.write(formats, publication=publication, scale=scale)
        except LayerscopeError as err:  # exports/ not writable: the download itself still works
            logger.warning("not saved to the workspace: %s", err)
            folder = Path(tempfile.mkdtemp(prefix="layerscope-export-"))
            folder, sidecar = self.write(formats, publication=publication, scale=scale, folder=folder)
        if fmt != "zip":
            if fmt in sidecar.get("skipped", {}):
                raise LayerscopeError(sidecar["skipped"][fmt])
            return (folder / sidecar["files"][fmt]["path"]).read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for entry in sidecar["files"].values():
                archive.write(folder / entry["path"], f"{self.stem}/{entry['path']}")
            archive.write(folder / f"{self.stem}.json", f"{self.stem}/{self.stem}.json")
        return buffer.getvalue()

    def sidecar(self, *, publication: bool, scale: float) -> bytes:
        parts = self._parts()
        return export.sidecar_bytes(self.fig, name=self.stem, spec=self.spec, store=cached.store(),
                                    analysis=parts["analysis"], caption=parts["caption"], publication=publication,
                                    scale=scale)


def show_built(built: recipes.BuiltFigure, *, key: str, name: str | None = None, **plotly_chart_kwargs):
    """show_figure of a figure built by its recipe (`build`): its spec, table and provenance go with the export."""
    return show_figure(built.figure, name=name or built.name, spec=built.spec, data=built.table, key=key,
                       built=built, **plotly_chart_kwargs)


def show_figure(fig: go.Figure, *, name: str, spec: dict, data: pd.DataFrame | None = None, key: str,
                built: recipes.BuiltFigure | None = None, **plotly_chart_kwargs):
    """st.plotly_chart(fig, key=key, **kwargs) plus an Export popover; returns the chart's event.

    name: a file-name stem ("probe-minilm-topic"); spec: core.export.figure_spec(...) naming
    the registry figure and its parameters, so the sidecar can regenerate it; data: the table
    behind the figure (default: rebuilt from the spec, else the figure's own traces).
    """
    event = st.plotly_chart(fig, key=key, **plotly_chart_kwargs)
    prepared = PreparedExport(fig, name=name, spec=spec, data=data, built=built)
    with st.popover("Export", icon=":material/download:"):
        fmt = st.selectbox("Format", CHOICES, format_func=LABELS.get, key=f"{key}__export_format")
        scale = 2
        if fmt in ("png", "zip"):
            scale = st.selectbox("PNG scale", export.SCALES, index=1, key=f"{key}__export_scale",
                                 format_func=lambda s: f"{s}x", help="Pixels per figure pixel: 2x or more for print.")
        publication = st.checkbox(
            "Publication style", value=True, key=f"{key}__export_publication",
            help="White background, larger fonts, colour-blind-safe (Okabe-Ito) colours, no toolbar. "
            "The figure on screen keeps its style.",
        )
        reason = images_unavailable() if fmt in export.IMAGE_FORMATS else None
        if reason:
            st.caption(f":material/block: {reason}")
        elif fmt == "zip" and images_unavailable():
            st.caption("No browser here: the zip holds HTML, CSV, Parquet and the sidecar, without images.")
        extension = "zip" if fmt == "zip" else fmt
        st.download_button(
            f"Download {LABELS[fmt]}", data=lambda: prepared.download(fmt, publication=publication, scale=scale),
            file_name=f"{prepared.stem}.{extension}", mime=export.MIME[extension], key=f"{key}__export_download",
            on_click="ignore", disabled=bool(reason), icon=":material/download:", type="primary",
        )
        st.download_button(
            "Sidecar (JSON)", data=lambda: prepared.sidecar(publication=publication, scale=scale),
            file_name=f"{prepared.stem}.json", mime=export.MIME["json"], key=f"{key}__export_sidecar",
            on_click="ignore", help="Everything needed to regenerate the figure: `python -m core figure --from "
            "<this file>`. Each download also saves the file and its sidecar in the workspace's exports/figures/.",
        )
    return event
