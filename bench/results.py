"""The one closing line per target that every benchmark prints."""

from __future__ import annotations


def result(figure: str, value: str, target: str, met: bool) -> None:
    """Print `result: <figure> = <value> (target <target>) met` (or `NOT met`)."""
    print(f"result: {figure} = {value} (target {target}) {'met' if met else 'NOT met'}")
