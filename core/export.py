"""Figure -> PNG / SVG / PDF / standalone HTML, the data behind it as CSV / Parquet, and a JSON sidecar.

    from core import export
    files = export.export_figure(fig, folder, name="probe_topic", spec=spec, store=store)

A *figure spec* names a figure in the registry (see core.report) and everything needed
to rebuild it from the store::

    {"figure": "probe_curve", "runs": ["<run key>"], "params": {"column": "topic", "title": "..."}}

The sidecar written beside every export holds the spec plus provenance (model identity and
weights hash, dataset fingerprint, layers, pooling, metric and variant, parameters, seeds,
Layerscope version, date), so `python -m core figure --from <sidecar>` regenerates it.

Static images use kaleido 1.x, which drives a system Chrome/Chromium. One browser is kept
alive per process (`ImageRenderer`): the first image costs ~2 s, later ones ~0.2 s. Without
a browser, image formats raise `BrowserMissingError`; HTML, CSV and Parquet still work.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.errors import LayerscopeError
from core.figures.style import ACCENT, MUTED, PALETTE, style_figure

logger = logging.getLogger(__name__)

SIDECAR_KIND = "layerscope.figure"
SIDECAR_VERSION = 1
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
VECTOR_MAX_POINTS = 20_000  # SVG/PDF draw every marker as a path: more points are downsampled (seeded)
RENDER_TIMEOUT_S = 120.0
EXPORTS_DIR = "exports"  # the workspace's folder for exports

# screen colours (core.figures.style and the figure modules) -> colour-blind-safe Okabe-Ito
_PUBLICATION_COLOURS = {
    ACCENT: PALETTE[0],  # blue
    MUTED: PALETTE[8],  # grey
    "#e03131": PALETTE[5],  # chance line: vermillion
    "#fab005": PALETTE[1],  # best-layer star: orange
    "#d6336c": PALETTE[3],  # search matches: reddish purple
}


class BrowserMissingError(LayerscopeError):
    """Static image export needs Chrome or Chromium and none was found."""


# ----- browser and the kept-alive renderer ------------------------------------------------------
def browser_path() -> str | None:
    """The Chrome/Chromium kaleido would use ($BROWSER_PATH, else the PATH), or None."""
    from choreographer.browsers.chromium import Chromium

    try:
        path = Chromium.find_browser(skip_local=False)
    except Exception:  # a broken local install is the same as none  # noqa: BLE001
        return None
    return path if path and Path(path).is_file() else None


def images_unavailable_reason() -> str | None:
    """Why PNG/SVG/PDF cannot be made here, or None when they can."""
    if browser_path() is not None:
        return None
    where = os.environ.get("BROWSER_PATH")
    found = f"BROWSER_PATH={where!r} is not a browser" if where else "no Chrome or Chromium was found"
    return (
        f"PNG, SVG and PDF need Chrome or Chromium and {found}: install Debian's `chromium` "
        "(apt-get install chromium) or set BROWSER_PATH. HTML, CSV and Parquet exports still work."
    )


class ImageRenderer:
    """A headless browser kept alive in its own thread, rendering Plotly figures with kaleido.

    Thread-safe (one render at a time). A failed render closes the browser; the next call
    starts a fresh one. `close()` is registered at exit for the process-wide instance.
    """

    def __init__(self, *, timeout: float = RENDER_TIMEOUT_S) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._kaleido = None

    @property
    def running(self) -> bool:
        return self._kaleido is not None

    def _call(self, coroutine, timeout: float):
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _start(self) -> None:
        reason = images_unavailable_reason()
        if reason:
            raise BrowserMissingError(reason)
        import kaleido

        async def open_browser():
            k = kaleido.Kaleido(n=1, timeout=self.timeout, mathjax=False)  # no CDN: machines may be offline
            await k.open()
            return k

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="layerscope-kaleido", daemon=True)
        self._thread.start()
        try:
            self._kaleido = self._call(open_browser(), self.timeout)
        except Exception as err:
            self._stop_loop()
            raise LayerscopeError(
                f"could not start the browser for image export ({browser_path()}): {err or type(err).__name__}"
            ) from err
        except BaseException:
            self._stop_loop()
            raise

    def render(self, fig: go.Figure | Mapping, fmt: str, *, width: int, height: int, scale: float = 1) -> bytes:
        """PNG/SVG/PDF bytes of a figure (dict or go.Figure)."""
        if fmt not in IMAGE_FORMATS:
            raise LayerscopeError(f"format={fmt!r} is not an image format; choose one of {', '.join(IMAGE_FORMATS)}")
        fig_dict = fig.to_dict() if isinstance(fig, go.Figure) else dict(fig)
        opts = {"format": fmt, "width": int(width), "height": int(height), "scale": float(scale)}
        with self._lock:
            if self._kaleido is None:
                self._start()
            try:
                return self._call(self._kaleido.calc_fig(fig_dict, opts=opts), self.timeout + 10)
            except Exception as err:
                self._close_locked()
                raise LayerscopeError(f"could not render {fmt.upper()}: {err or type(err).__name__}") from err

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._kaleido is not None:
            try:
                self._call(self._kaleido.close(), 30)
            except Exception:  # the browser may already be gone  # noqa: BLE001
                logger.debug("closing kaleido failed", exc_info=True)
            self._kaleido = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            if not self._loop.is_running():
                self._loop.close()
        self._loop = self._thread = None


_renderer = ImageRenderer()
atexit.register(_renderer.close)


def renderer() -> ImageRenderer:
    """The process-wide kept-alive renderer."""
    return _renderer


# ----- publication style and format-specific preparation ----------------------------------------
def _rgb(colour: str) -> tuple[tuple[int, int, int], float | None] | None:
    text = colour.strip().lower()
    if re.fullmatch(r"#[0-9a-f]{6}", text):
        return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5)), None  # type: ignore[return-value]
    m = re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*([\d.]+)\s*)?\)", text)
    if m:
        return (int(m[1]), int(m[2]), int(m[3])), (float(m[4]) if m[4] is not None else None)
    return None


_COLOUR_MAP = {_rgb(screen)[0]: _rgb(pub)[0] for screen, pub in _PUBLICATION_COLOURS.items()}


def _publication_colour(colour: str) -> str:
    parsed = _rgb(colour)
    if parsed is None or parsed[0] not in _COLOUR_MAP:
        return colour
    (r, g, b), alpha = _COLOUR_MAP[parsed[0]], parsed[1]
    return f"#{r:02x}{g:02x}{b:02x}" if alpha is None else f"rgba({r},{g},{b},{alpha:g})"


def _recolour(node: Any) -> Any:
    """Map screen colours to the publication palette in a figure dict (keys ending in 'color')."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key.endswith("color") and isinstance(value, str):
                out[key] = _publication_colour(value)
            elif key.endswith("color") and isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
                out[key] = [_publication_colour(v) if isinstance(v, str) else v for v in value]
            else:
                out[key] = _recolour(value)
        return out
    if isinstance(node, (list, tuple)) and node and isinstance(node[0], dict):
        return [_recolour(v) for v in node]
    return node


def publication_style(fig: go.Figure) -> go.Figure:
    """A copy of `fig` in the publication style: white background, larger fonts, colour-blind-safe colours.

    Applied through core.figures.style.style_figure(publication=True), keeping the figure's
    titles, height and any wider margins; screen accent colours become Okabe-Ito colours.
    The toolbar is dropped by `figure_bytes` (HTML config), not here.
    """
    layout = fig.layout
    margin = {side: getattr(layout.margin, side) for side in ("l", "r", "t", "b")}
    out = go.Figure(_recolour(fig.to_dict()))
    style_figure(
        out,
        title=layout.title.text or "",
        x_title=layout.xaxis.title.text,
        y_title=layout.yaxis.title.text,
        publication=True,
        height=layout.height,
    )
    out.update_layout(title={"pad": {"l": 8}})  # the screen title sits flush left; give print a margin
    wider = {side: value for side, value in margin.items()
             if value is not None and value > (out.layout.margin[side] or 0)}
    if wider:
        out.update_layout(margin=wider)
    return out


def _decoded(node: Any) -> Any:
    """A figure dict with plotly's typed arrays ({"dtype", "bdata", "shape"}) turned back into numpy arrays."""
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            array = np.frombuffer(base64.b64decode(node["bdata"]), dtype=np.dtype(node["dtype"]))
            shape = node.get("shape")
            return array.reshape([int(v) for v in str(shape).split(",")]) if shape else array
        return {key: _decoded(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_decoded(value) for value in node]
    return node


def _n_points(trace: Mapping) -> int:
    for axis in ("x", "y"):
        values = trace.get(axis)
        if values is not None and not isinstance(values, str):
            return len(values)
    return 0


def _take(value: Any, keep: np.ndarray, n: int) -> Any:
    if isinstance(value, dict):
        return {k: _take(v, keep, n) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, str) and len(value) == n:
        array = np.asarray(value, dtype=object if isinstance(value, (list, tuple)) else None)
        return array[keep]
    return value


def static_figure(fig: go.Figure, fmt: str, *, seed: int = 0) -> tuple[go.Figure, dict[str, Any] | None]:
    """The figure as drawn into a static format, and a note when it had to change.

    Every static format: animation controls and frames dropped (the first frame is drawn);
    WebGL scatter becomes vector scatter (PNG keeps WebGL above VECTOR_MAX_POINTS markers).
    SVG/PDF above VECTOR_MAX_POINTS markers: each large trace is subsampled (seeded,
    proportionally) and the note says so; PNG and HTML keep every point.
    """
    data = fig.to_dict()
    data["data"] = _decoded(data.get("data", []))
    note: dict[str, Any] = {}
    if data.get("frames"):
        note["animation"] = "static image of the first frame; the HTML export keeps the animation"
        data.pop("frames")
        data["layout"].pop("updatemenus", None)
        data["layout"].pop("sliders", None)
    traces = data.get("data", [])
    gl_points = sum(_n_points(t) for t in traces if t.get("type") == "scattergl")
    if fmt in ("svg", "pdf") or gl_points <= VECTOR_MAX_POINTS:
        # headless WebGL (software) is slow and rasterises inside SVG: draw markers as vectors instead
        for trace in traces:
            if trace.get("type") == "scattergl":
                trace["type"] = "scatter"
    if fmt in ("svg", "pdf"):
        counts = [_n_points(t) if t.get("type") == "scatter" else 0 for t in traces]
        total = sum(counts)
        if total > VECTOR_MAX_POINTS:
            rng = np.random.default_rng(seed)
            large = sum(c for c in counts if c > 100)
            budget = max(VECTOR_MAX_POINTS - (total - large), 100)
            kept = 0
            for i, (trace, n) in enumerate(zip(traces, counts)):
                if n <= 100:  # highlights, selections, lines: always kept whole
                    kept += n
                    continue
                size = max(1, round(n * budget / large))
                keep = np.sort(rng.choice(n, size=size, replace=False))
                traces[i] = {k: (_take(v, keep, n) if k not in ("type", "name") else v) for k, v in trace.items()}
                kept += size
            note["downsampled"] = {
                "from_points": int(total),
                "to_points": int(kept),
                "seed": seed,
                "why": f"{fmt.upper()} draws every marker as a vector path; above {VECTOR_MAX_POINTS:,} markers "
                "the file becomes unwieldy, so large traces were subsampled at random (seeded). "
                "PNG and HTML keep every point.",
            }
    return go.Figure(data), (note or None)


# ----- tables -------------------------------------------------------------------------------------
def _column(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        numeric = pd.to_numeric(pd.Series(array.ravel()), errors="coerce")
        if numeric.notna().sum() == pd.Series(array.ravel()).notna().sum():
            return numeric.to_numpy()
        return np.array(["" if v is None else str(v) for v in array.ravel()], dtype=object)
    return array


def figure_table(fig: go.Figure) -> pd.DataFrame:
    """The data drawn in `fig`, long form: one row per point (or heatmap cell) of every trace.

    Columns: trace, trace_name, type, point, x, y, [z], customdata_0.. and text where present.
    """
    frames = []
    for t, trace in enumerate(fig.data):
        kind = trace.type
        if kind == "heatmap" and trace.z is not None:
            z = np.asarray(trace.z, dtype=float)
            rows, cols = np.indices(z.shape)
            xs = np.asarray(trace.x) if trace.x is not None else np.arange(z.shape[1])
            ys = np.asarray(trace.y) if trace.y is not None else np.arange(z.shape[0])
            part = {"x": xs[cols.ravel()], "y": ys[rows.ravel()], "z": z.ravel()}
            if trace.text is not None and np.asarray(trace.text, dtype=object).shape == z.shape:
                part["text"] = _column(np.asarray(trace.text, dtype=object).ravel())
        else:
            n = _n_points({"x": trace.x, "y": trace.y}) if hasattr(trace, "x") else 0
            if not n:
                continue
            part = {axis: _column(getattr(trace, axis)) for axis in ("x", "y")
                    if getattr(trace, axis, None) is not None}
            custom = getattr(trace, "customdata", None)
            if custom is not None:
                custom = np.asarray(custom, dtype=object)
                custom = custom.reshape(len(custom), -1) if custom.ndim != 2 else custom
                if len(custom) == n:
                    for j in range(custom.shape[1]):
                        part[f"customdata_{j}"] = _column(custom[:, j])
            text = getattr(trace, "text", None)
            if text is not None and not isinstance(text, str) and len(text) == n:
                part["text"] = _column(text)
        size = len(next(iter(part.values())))
        frames.append(
            pd.DataFrame({"trace": t, "trace_name": trace.name or "", "type": kind, "point": np.arange(size), **part})
        )
    if not frames:
        return pd.DataFrame(columns=["trace", "trace_name", "type", "point", "x", "y"])
    table = pd.concat(frames, ignore_index=True)
    for name in table.columns:  # mixed object columns (numbers from one trace, text from another) -> text
        if table[name].dtype == object:
            table[name] = table[name].map(_text)
    return table


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def table_bytes(table: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return table.to_csv(index=False).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise LayerscopeError(f"format={fmt!r} is not a table format; choose one of {', '.join(TABLE_FORMATS)}")


# ----- one figure to bytes ---------------------------------------------------------------------
def image_size(fig: go.Figure) -> tuple[int, int]:
    return int(fig.layout.width or DEFAULT_WIDTH), int(fig.layout.height or DEFAULT_HEIGHT)


def html_bytes(fig: go.Figure, *, publication: bool) -> bytes:
    """A standalone HTML page (plotly.js inline, no network), toolbar hidden in the publication style."""
    import plotly.io as pio

    config = {"displaylogo": False, "responsive": True}
    if publication:
        config["displayModeBar"] = False
    return pio.to_html(fig, include_plotlyjs=True, full_html=True, config=config).encode()


def check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise LayerscopeError(f"format={fmt!r} is not supported; choose one of {', '.join(FORMATS)}")
    return fmt


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
    if scale not in SCALES and not (isinstance(scale, (int, float)) and 0 < scale <= 8):
        raise LayerscopeError(f"scale={scale!r} must be between 0 and 8 (e.g. {', '.join(map(str, SCALES))})")
    shown = publication_style(fig) if publication and not styled else fig
    if fmt == "html":
        return html_bytes(shown, publication=publication), None
    static, note = static_figure(shown, fmt)
    width, height = image_size(shown)
    scale = scale if fmt == "png" else 1  # SVG and PDF are vector: scale only changes their nominal size
    data = (image_renderer or _renderer).render(static, fmt, width=width, height=height, scale=scale)
    return data, note


# ----- safe paths and atomic writes ----------------------------------------------------------------
def slug(text: str, *, max_length: int = 80) -> str:
    """A file-name stem from any text: letters, digits, '.', '_' and '-' only."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._")[:max_length].strip("-._")
    return stem or "figure"


def safe_child(root: str | os.PathLike, name: str | os.PathLike) -> Path:
    """`root / name`, refusing names that leave `root`: '..', absolute paths, symlinks on the way.

    Raises LayerscopeError naming the offending part.
    """
    root = Path(root).expanduser().resolve()
    text = str(name).strip()
    if not text or "\x00" in text:
        raise LayerscopeError(f"folder name {str(name)!r} is empty or invalid; give a name like 'paper-figures'")
    relative = PurePosixPath(text.replace("\\", "/"))
    if relative.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise LayerscopeError(f"{text!r} is an absolute path; give a folder name inside {root}")
    if any(part == ".." for part in relative.parts):
        raise LayerscopeError(f"{text!r} leaves {root} ('..' is not allowed); give a folder name inside it")
    target = root
    for part in relative.parts:
        if part in ("", "."):
            continue
        target = target / part
        if target.is_symlink():
            raise LayerscopeError(f"{text!r} goes through a symbolic link ({target}); exports stay inside {root}")
    if not target.resolve().is_relative_to(root):
        raise LayerscopeError(f"{text!r} resolves outside {root}; give a folder name inside it")
    return target


def exports_root(store) -> Path:
    """The workspace's exports folder (created)."""
    return ensure_writable_dir(store.root / EXPORTS_DIR)


def export_folder(store, name: str) -> Path:
    """A user-chosen folder under the workspace's exports/ (created; names escaping it are refused)."""
    return ensure_writable_dir(safe_child(exports_root(store), name))


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check a file can be written there; LayerscopeError otherwise."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise LayerscopeError(f"{folder} exists and is not a folder; choose another output path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise LayerscopeError(f"cannot write to {folder}: {err.strerror or err}; choose another output path") from None
    return folder


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename over it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----- specs, provenance and sidecars ------------------------------------------------------------
def figure_spec(figure: str | None, runs: Sequence[str] = (), **params: Any) -> dict[str, Any]:
    """{"figure", "runs", "params"}: what rebuilds a figure from the store (see core.report.FIGURES)."""
    return {"figure": figure, "runs": [str(r) for r in runs], "params": _jsonable(params)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
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
        "spec": _jsonable(spec),
        "regenerable": bool(spec.get("figure")),
        "workspace": str(store.root) if store is not None else None,
        "runs": run_provenance(store, spec.get("runs", [])) if store is not None else [],
        "analysis": _jsonable(dict(analysis or {})),
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
    if sidecar.get("sidecar_version", 0) > SIDECAR_VERSION:
        raise LayerscopeError(
            f"{path} has sidecar format {sidecar['sidecar_version']}, newer than this Layerscope reads "
            f"({SIDECAR_VERSION}); upgrade Layerscope"
        )
    return sidecar


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

    Every file is written atomically. Image formats that cannot be made (no browser, or a
    render that failed) are listed under sidecar["skipped"] with the reason; the other
    formats are still written.
    """
    formats = [check_format(f) for f in dict.fromkeys(formats)]
    folder = ensure_writable_dir(folder)
    stem = slug(name)
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
        write_atomic(path, data)
        sidecar["files"][fmt] = {"path": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if note:
            sidecar["notes"][fmt] = note
    if skipped:
        sidecar["skipped"] = skipped
    write_atomic(safe_child(folder, f"{stem}.json"), json.dumps(sidecar, indent=1).encode())
    return sidecar


def sidecar_bytes(fig: go.Figure, **kwargs: Any) -> bytes:
    """A sidecar as JSON bytes for a download (no files listed)."""
    return json.dumps(make_sidecar(fig, **kwargs), indent=1).encode()


# ----- the registry: figure name -> a function that rebuilds it from the store --------------------
@dataclass
class BuiltFigure:
    """A figure rebuilt from its spec, with the data behind it and what produced it."""

    figure: go.Figure  # screen style, exactly as the dashboard draws it
    table: pd.DataFrame  # the data behind the figure (CSV / Parquet)
    analysis: dict[str, Any]  # metric, variant, parameters, seeds
    caption: str  # one or two sentences for a report
    name: str  # a file-name stem


Recipe = Callable[..., BuiltFigure]  # recipe(context, runs: list[str], **params) -> BuiltFigure
FIGURES: dict[str, Recipe] = {}


def register(name: str) -> Callable[[Recipe], Recipe]:
    """Decorator: make `name` a figure kind that `build_figure` can rebuild."""

    def add(recipe: Recipe) -> Recipe:
        FIGURES[name] = recipe
        return recipe

    return add


def figure_kinds() -> list[str]:
    import core.report  # noqa: F401  (registers the recipes)

    return sorted(FIGURES)


def build_figure(spec: Mapping[str, Any], store, *, load_model: Callable[[str], Any] | None = None) -> BuiltFigure:
    """Rebuild the figure a spec names, computing through the store (instant for stored results).

    Raises LayerscopeError for an unknown figure kind, a run missing from the store or bad params.
    """
    from core.report import Context, check_params

    kind = spec.get("figure") if isinstance(spec, Mapping) else None
    if kind not in figure_kinds():
        raise LayerscopeError(
            f"figure={kind!r} is not a figure this Layerscope can rebuild; known: {', '.join(figure_kinds())}"
        )
    check_params(spec)
    context = Context(store, load_model=load_model)
    return FIGURES[kind](context, list(spec.get("runs") or []), **dict(spec.get("params") or {}))
