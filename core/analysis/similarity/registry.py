"""The similarity metrics Layerscope knows, one `Metric` record each, by name.

A metric family registers its records when its module is imported (`register_metric`);
`similarity_matrix`, the single-pair functions, labels and the Compare page's dropdown
all read them from here, so adding a metric is one file with one `register_metric` call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from core.analysis.similarity.centring import as_tensor, check_rows
from core.device import pick_device
from core.errors import LayerscopeError
from core.validation import check_choice


def features_bytes(n: int, d: int, params: Mapping[str, Any]) -> int:
    """Bytes of a layer kept as n rows of min(n, d) float64 features plus one vector."""
    return 8 * n * (min(n, d) + 1)


def triangle_bytes(n: int, d: int, params: Mapping[str, Any]) -> int:
    """Bytes of a layer kept as the upper triangle and diagonal of an n x n float64 matrix."""
    return 8 * (n * (n - 1) // 2 + n)


@dataclass(frozen=True, eq=False)  # records compare and hash by identity
class Metric:
    """One similarity metric: its pair function, how a layer is prepared once, and how it reads."""

    name: str  # key used by similarity_matrix(metric=...), the store and the dropdown
    function: Callable[..., float]  # f(X (n, d1), Y (n, d2), *, **params, device=None) -> float
    prepare: Callable[[torch.Tensor, str, Mapping[str, Any]], Any]  # (X (n, d) float64, layer name, params)
    compare: Callable[[Any, Any], float]  # two prepared layers -> the value
    short_name: str  # display name, e.g. "linear CKA"
    description: str  # what it measures, one line (dropdown help)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # parameters and their defaults
    check_params: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # filled params -> checked params
    min_rows: int = 2  # fewest inputs for which the metric is defined
    check_n: Callable[[int, Mapping[str, Any]], None] | None = None  # limits on n set by parameters (k < n)
    is_distance: bool = False  # lower is more similar
    prepared_bytes: Callable[[int, int, Mapping[str, Any]], int] = features_bytes  # (n, d, params) per layer
    variant: Callable[[Mapping[str, Any]], str] | None = None  # the options that change the value, for labels
    # (prepared A, prepared B, symmetric) -> (len A, len B) values at once, where cheaper than pair by pair
    compare_block: Callable[[Sequence[Any], Sequence[Any], bool], np.ndarray] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def higher_is_better(self) -> bool:
        return not self.is_distance

    def fill_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in, then every value checked; unknown names rejected."""
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            allowed = ", ".join(self.defaults) or "none"
            raise LayerscopeError(
                f"{self.name} has no parameter {', '.join(map(repr, unknown))}; its parameters: {allowed}"
            )
        filled = {**self.defaults, **params}
        return self.check_params(filled) if self.check_params is not None else filled

    def check_inputs(self, n: int, params: Mapping[str, Any]) -> None:
        """Raise unless the metric is defined for n inputs with these (filled) parameters."""
        if self.check_n is not None:
            self.check_n(n, params)
        check_rows(n, self.min_rows, self.name)

    def label(self, params: Mapping[str, Any] | None = None) -> str:
        """Display name with the options that change the value, e.g. 'mutual k-NN (k=10, no clipping)'."""
        if self.variant is None:
            return self.short_name
        return f"{self.short_name} ({self.variant({**self.defaults, **(params or {})})})"


_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Make `metric` known by its name (registering a name again replaces the record)."""
    if not isinstance(metric, Metric):
        raise TypeError(f"register_metric takes a Metric record; got {type(metric).__name__}")
    _REGISTRY[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric called `name`; raises naming the metrics there are."""
    return _REGISTRY[check_choice("metric", name, _REGISTRY)]


def metric_choices() -> list[Metric]:
    """Every registered metric, in registration order (for a dropdown)."""
    return list(_REGISTRY.values())


def check_metric(metric: str) -> str:
    """`metric` if it names a registered metric."""
    return get_metric(metric).name


def metric_label(metric: str, params: Mapping[str, Any]) -> str:
    """Display name of a metric with the options that change its value."""
    return get_metric(metric).label(params)


def pair_value(name: str, X: Any, Y: Any, device: str | torch.device | None, **params: Any) -> float:
    """Metric `name` of X (n, d1) and Y (n, d2), rows aligned by input, in float64."""
    metric = get_metric(name)
    filled = metric.fill_params(params)
    dev = pick_device(device)
    Xt, Yt = as_tensor(X, "X", dev), as_tensor(Y, "Y", dev)
    if Xt.shape[0] != Yt.shape[0]:
        raise LayerscopeError(
            f"X has {Xt.shape[0]} rows but Y has {Yt.shape[0]}; rows must be the same inputs in the same order"
        )
    metric.check_inputs(Xt.shape[0], filled)
    return float(metric.compare(metric.prepare(Xt, "X", filled), metric.prepare(Yt, "Y", filled)))


# ----- tables by metric name, read live from the registry ---------------------------------------
class _Table(Mapping[str, Any]):
    """A read-only {metric name: value} table over the registry."""

    def __init__(self, value: Callable[[Metric], Any]) -> None:
        self._value = value

    def __getitem__(self, name: str) -> Any:
        return self._value(_REGISTRY[name])

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


class _DistanceNames(AbstractSet[str]):
    """Names of the registered metrics for which lower is more similar."""

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY and _REGISTRY[name].is_distance  # type: ignore[index]

    def __iter__(self) -> Iterator[str]:
        return (name for name, metric in _REGISTRY.items() if metric.is_distance)

    def __len__(self) -> int:
        return sum(metric.is_distance for metric in _REGISTRY.values())

    def __repr__(self) -> str:
        return repr(set(self))


SIMILARITY_METRICS: Mapping[str, tuple[Callable[..., float], str]] = _Table(lambda m: (m.function, m.description))
METRIC_DEFAULTS: Mapping[str, dict[str, Any]] = _Table(lambda m: dict(m.defaults))  # filled before validation
METRIC_NAMES: Mapping[str, str] = _Table(lambda m: m.short_name)  # display names
DISTANCE_METRICS: AbstractSet[str] = _DistanceNames()  # lower is more similar
