"""Static images: a headless Chrome/Chromium kept alive in its own thread, driven by kaleido 1.x.

One browser is kept alive per process (`renderer()`): the first image costs ~2 s, later
ones ~0.2 s. Without a browser, image formats raise `BrowserMissingError`.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import plotly.graph_objects as go

from core.errors import LayerscopeError
from core.export.formats import IMAGE_FORMATS

logger = logging.getLogger(__name__)

RENDER_TIMEOUT_S = 120.0


class BrowserMissingError(LayerscopeError):
    """Static image export needs Chrome or Chromium and none was found."""


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
        """Whether a browser is open."""
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
        """Close the browser (a later render starts a fresh one)."""
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
