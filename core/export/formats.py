"""The export formats, their MIME types and the image size a figure is drawn at."""

from __future__ import annotations

import plotly.graph_objects as go

from core.errors import LayerscopeError

IMAGE_FORMATS = ("png", "svg", "pdf")
FIGURE_FORMATS = (*IMAGE_FORMATS, "html")
TABLE_FORMATS = ("csv", "parquet")
FORMATS = (*FIGURE_FORMATS, *TABLE_FORMATS)
MIME = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "html": "text/html",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
    "zip": "application/zip",
}
SCALES = (1, 2, 3, 4)
DEFAULT_WIDTH, DEFAULT_HEIGHT = 960, 540  # image size when the figure sets none (pixels at scale 1)


def check_format(fmt: str) -> str:
    """`fmt` as a lower-case format name ('.PNG' -> 'png'); LayerscopeError for an unsupported one."""
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise LayerscopeError(f"format={fmt!r} is not supported; choose one of {', '.join(FORMATS)}")
    return fmt


def image_size(fig: go.Figure) -> tuple[int, int]:
    """(width, height) in pixels at scale 1: the figure's own, else DEFAULT_WIDTH x DEFAULT_HEIGHT."""
    return int(fig.layout.width or DEFAULT_WIDTH), int(fig.layout.height or DEFAULT_HEIGHT)
