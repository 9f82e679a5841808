"""Paying umap-learn's numba compilation up front, e.g. from a background thread at server start.

umap-learn compiles its numba code on the first call in a process (50-77 s on a
2-core machine; n >= 4096 also compiles pynndescent).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from core.analysis.projection.aligned import aligned_projection
from core.analysis.projection.maps import project

logger = logging.getLogger(__name__)

_warm_up_lock = threading.Lock()


def preload_imports() -> None:
    """Import scikit-learn's projection modules in the calling thread.

    Call it before starting `warm_up_umap` in a background thread: two threads
    importing scikit-learn for the first time at once can see it half-initialised.
    """
    import sklearn.decomposition  # noqa: F401
    import sklearn.manifold  # noqa: F401
    import sklearn.neighbors  # noqa: F401


def warm_up_umap(*, seed: int = 0, nndescent: bool = False) -> float:
    """Compile umap-learn's numba code by mapping small random data; returns seconds spent.

    Runs UMAP and AlignedUMAP on 64 random points (exact neighbours). nndescent=True
    also maps 4096 points, which compiles pynndescent (used from 4096 inputs up).
    Safe to call from a background thread; concurrent calls wait for the first.
    """
    started = time.perf_counter()
    with _warm_up_lock:
        rng = np.random.default_rng(seed)
        data = [rng.standard_normal((64, 8)).astype(np.float32) for _ in range(2)]
        project(data[0], "umap", seed=seed, n_neighbors=5)
        aligned_projection(data, "umap", seed=seed, n_neighbors=5)
        if nndescent:
            project(rng.standard_normal((4096, 8)).astype(np.float32), "umap", seed=seed)
    elapsed = time.perf_counter() - started
    logger.info("UMAP warm-up took %.1f s", elapsed)
    return elapsed
