"""Checkpoint series: the runs of one training's checkpoints, linked in training order.

    record.py       Series, save_series, list_series, open_series: the stored link between runs
    checkpoints.py  a folder of checkpoint folders, hub revisions or digits-mlp:series -> checkpoints
    checks.py       what every checkpoint shares with the first: architecture, tokenisation
    extract.py      extract_series(): every checkpoint on the same inputs, then the series
"""

from core.series.extract import extract_series
from core.series.record import KIND, Series, list_series, open_series, save_series

__all__ = ["KIND", "Series", "extract_series", "list_series", "open_series", "save_series"]
