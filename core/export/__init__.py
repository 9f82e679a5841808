"""Figure -> PNG / SVG / PDF / standalone HTML, the data behind it as CSV / Parquet, and a JSON sidecar.

    from core import export
    files = export.export_figure(fig, folder, name="probe_topic", spec=spec, store=store)

A figure exported with a *spec* (`figure_spec`, naming a recipe of core.recipes) can be
rebuilt from the store: `python -m core figure --from <sidecar>`.

Static images use kaleido 1.x, which drives a system Chrome/Chromium kept alive per process
(`render.py`). Without a browser, image formats raise `BrowserMissingError`; HTML, CSV and
Parquet still work.

This package sits below the recipes and imports none of them. `build_figure`, `FIGURES`,
`register`, `figure_kinds`, `Recipe` and `BuiltFigure` are the recipe registry's (core.recipes),
reachable here too on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.export.figure import export_figure, figure_bytes, html_bytes
from core.export.files import EXPORTS_DIR, ensure_writable_dir, export_folder, exports_root, safe_child, slug
from core.export.formats import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    FIGURE_FORMATS,
    FORMATS,
    IMAGE_FORMATS,
    MIME,
    SCALES,
    TABLE_FORMATS,
    check_format,
    image_size,
)
from core.export.publication import publication_style
from core.export.render import (
    RENDER_TIMEOUT_S,
    BrowserMissingError,
    ImageRenderer,
    browser_path,
    images_unavailable_reason,
    renderer,
)
from core.export.sidecar import (
    SIDECAR_KIND,
    SIDECAR_VERSION,
    data_fingerprint,
    figure_spec,
    make_sidecar,
    read_sidecar,
    run_provenance,
    sidecar_bytes,
)
from core.export.static import VECTOR_MAX_POINTS, static_figure
from core.export.tables import figure_table, table_bytes
from core.store import write_bytes_atomic as write_atomic

_RECIPE_NAMES = ("BuiltFigure", "FIGURES", "Recipe", "build_figure", "figure_kinds", "register")


def __getattr__(name: str) -> Any:
    # the registry sits above export (recipes draw, export writes): imported only when asked for
    if name in _RECIPE_NAMES:
        return getattr(importlib.import_module("core.recipes"), name)
    raise AttributeError(f"module 'core.export' has no attribute {name!r}")


__all__ = [
    "BrowserMissingError", "DEFAULT_HEIGHT", "DEFAULT_WIDTH", "EXPORTS_DIR", "FIGURE_FORMATS", "FORMATS",
    "IMAGE_FORMATS", "ImageRenderer", "MIME", "RENDER_TIMEOUT_S", "SCALES", "SIDECAR_KIND", "SIDECAR_VERSION",
    "TABLE_FORMATS", "VECTOR_MAX_POINTS", "browser_path", "check_format", "data_fingerprint", "ensure_writable_dir",
    "export_figure", "export_folder", "exports_root", "figure_bytes", "figure_spec", "figure_table", "html_bytes",
    "image_size", "images_unavailable_reason", "make_sidecar", "publication_style", "read_sidecar", "renderer",
    "run_provenance", "safe_child", "sidecar_bytes", "slug", "static_figure", "table_bytes", "write_atomic",
]
