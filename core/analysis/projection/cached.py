"""Maps of a run's layers through the store: computed once, read back on every later visit."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core import codec
from core.analysis.projection.aligned import ALIGNED_METHODS, aligned_projection
from core.analysis.projection.maps import METHODS, METRICS, project
from core.progress import Progress, report
from core.runs import check_layer, check_layers
from core.validation import check_choice

if TYPE_CHECKING:
    from core.activations import Activations
    from core.store import Store

PROJECTION_VERSION = 3  # bump when a change alters stored maps
KIND = "projection"  # the store's folder for maps
METHOD_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}  # for progress messages


@dataclass(frozen=True, eq=False)
class LayerMap:
    """The stored map of one layer of a run."""

    layer: str  # the layer mapped
    coords: np.ndarray  # (n_inputs, n_components) float32


@dataclass(frozen=True, eq=False)
class AlignedMaps:
    """The stored aligned maps of several layers of a run."""

    layers: tuple[str, ...]  # the layers mapped, in the order given
    coords: np.ndarray  # (n_layers, n_inputs, 2) float32


def _library_version(method: str) -> str:
    package = "umap-learn" if method == "umap" else "scikit-learn"
    return f"{package} {importlib.metadata.version(package)}"


def _params(
    acts: Activations, method: str, *, seed: int, n_neighbors: int, min_dist: float, metric: str, **specific: Any
) -> dict[str, Any]:
    """Every input that changes a map: the run, the method and its options, the library, a version."""
    return {
        "run": acts.key,
        **specific,
        "method": method,
        "seed": int(seed),
        "n_neighbors": int(n_neighbors),
        "min_dist": float(min_dist),
        "metric": metric,
        "library": _library_version(method),
        "version": PROJECTION_VERSION,
    }


def projection_cached(
    acts: Activations,
    layer: str,
    method: str,
    store: Store,
    *,
    n_components: int = 2,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    perplexity: float = 30.0,
    progress: Progress | None = None,
) -> np.ndarray:
    """The (n_inputs, n_components) map of one layer of a run, read from the store or computed.

    progress hears of the fit only when it is computed: one step (the libraries report no
    iterations), so a caller's bar shows what runs while its clock moves.
    """
    method = check_choice("method", method, METHODS)
    metric = check_choice("metric", metric, METRICS)
    layer = check_layer(acts, layer)
    options = {"seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric}
    params = _params(
        acts, method, **options, layer=layer, aligned=False, n_components=int(n_components),
        perplexity=float(perplexity),
    )

    def compute() -> LayerMap:
        rows = acts.pooled(layer)  # (n_inputs, d): tokens runs give the mean of each input's tokens
        report(progress, 0, 1, f"fitting {METHOD_NAMES[method]} to {rows.shape[0]:,} inputs of {rows.shape[1]:,} "
               "dimensions (one step: no iterations are reported)")
        coords = project(rows, method, n_components=n_components, perplexity=perplexity, **options)
        return LayerMap(layer=layer, coords=coords)

    coords = np.asarray(store.cached(KIND, params, compute, LayerMap).coords)
    report(progress, 1, 1, "map ready")
    return coords


def _aligned_params(
    acts: Activations, layers: Sequence[str], method: str, *, seed: int, n_neighbors: int, min_dist: float,
    metric: str,
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """The checked layer names, the method's options and the store params of aligned maps."""
    method = check_choice("method", method, ALIGNED_METHODS)
    metric = check_choice("metric", metric, METRICS)
    names = list(check_layers(acts, layers))
    options = {"seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric}
    return names, options, _params(acts, method, **options, layers=names, aligned=True, n_components=2)


def aligned_projection_cached(
    acts: Activations,
    layers: Sequence[str],
    method: str,
    store: Store,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """Aligned (n_inputs, 2) maps of `layers` of a run (see aligned_projection), through the store."""
    names, options, params = _aligned_params(acts, layers, method, seed=seed, n_neighbors=n_neighbors,
                                             min_dist=min_dist, metric=metric)

    def compute() -> AlignedMaps:
        rows = [acts.pooled(name) for name in names]
        maps = aligned_projection(rows, method, progress=progress, **options)
        return AlignedMaps(layers=tuple(names), coords=np.stack(maps))

    stored = store.cached(KIND, params, compute, AlignedMaps)
    report(progress, len(names), len(names), "maps ready")
    return [np.asarray(coords) for coords in stored.coords]


def aligned_projection_stored(
    acts: Activations,
    layers: Sequence[str],
    method: str,
    store: Store,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
) -> list[np.ndarray] | None:
    """The aligned (n_inputs, 2) maps aligned_projection_cached would return, if stored; None, computing nothing."""
    _, _, params = _aligned_params(acts, layers, method, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist,
                                   metric=metric)
    stored = store.lookup(KIND, params, AlignedMaps)
    return None if stored is None else [np.asarray(coords) for coords in stored.coords]


def _read_legacy_map(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> LayerMap:
    """A LayerMap from the layout written before the codec: array "coords", meta "layer"."""
    return LayerMap(layer=meta["layer"], coords=np.array(arrays["coords"]))


def _read_legacy_aligned(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> AlignedMaps:
    """AlignedMaps from the layout written before the codec: arrays "map000", "map001", ..., meta "layers"."""
    layers = tuple(meta["layers"])
    return AlignedMaps(layers=layers, coords=np.stack([np.asarray(arrays[f"map{i:03d}"]) for i in range(len(layers))]))


codec.register_legacy(LayerMap, _read_legacy_map)
codec.register_legacy(AlignedMaps, _read_legacy_aligned)
