"""Bad files, generated: random tables written as CSV, JSONL and Parquet load aligned or are refused cleanly.

Every generated table is counted, and those that broke a check; the module records the counts for
docs/reliability.md when it ends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core
from core.errors import LayerscopeError
from reliability_table import record

TEXTS = st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "NA", "null", "123", "007", "a,b", 'say "hi"', "é\u200b"]))
LABELS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["inf", "nan", "", "label"]),
)
COUNTS = {"tried": 0, "lost": 0}  # generated tables loaded, and those that broke a check (shrinking included)
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw) -> pd.DataFrame:
    """A table with a unique row number, a text column and 0-3 label columns of any mix of types."""
    n = draw(st.integers(0, 12))
    names = draw(st.lists(st.text(alphabet="abcXYZ_é ", min_size=1, max_size=6), max_size=3, unique=True))
    table = {"row": list(range(n)), "text": draw(st.lists(TEXTS, min_size=n, max_size=n))}
    for name in names:
        if name not in table:
            table[name] = draw(st.lists(LABELS, min_size=n, max_size=n))
    return pd.DataFrame(table)


def _write(table: pd.DataFrame, folder: Path, fmt: str, encoding: str) -> Path:
    path = folder / f"data.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False, encoding=encoding)
    elif fmt == "jsonl":
        path.write_bytes(table.to_json(orient="records", lines=True, force_ascii=False).encode(encoding))
    else:
        table.astype({c: str for c in table.columns if table[c].dtype == object}).to_parquet(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def _record_counts(request):
    """After the module: record how many generated tables were tried and how many broke a check."""
    COUNTS.update(tried=0, lost=0)
    yield
    if COUNTS["tried"]:
        record(request.node.nodeid, "generated CSV/JSONL/Parquet tables (hypothesis examples)", **COUNTS)


def _check(table: pd.DataFrame, fmt: str, encoding: str) -> None:
    """Counts the table as tried, and as lost when a check fails."""
    COUNTS["tried"] += 1
    try:
        _check_one(table, fmt, encoding)
    except BaseException:
        COUNTS["lost"] += 1
        raise


def _check_one(table: pd.DataFrame, fmt: str, encoding: str) -> None:
    """Loading raises nothing but LayerscopeError; what loads keeps every row, texts and labels aligned."""
    with tempfile.TemporaryDirectory() as folder:
        path = _write(table, Path(folder), fmt, encoding)
        try:
            dataset = core.load_dataset(path, text_column="text")
        except LayerscopeError as err:
            assert "\n" not in str(err)
            return
    assert len(dataset) == len(table) == len(dataset.texts)
    assert dataset.table["row"].tolist() == list(range(len(table)))  # every row, in order, labels beside it
    assert all(isinstance(t, str) and t.strip() for t in dataset.texts)
    if fmt != "csv":  # JSON and Parquet keep their types: the texts are exactly those written
        assert dataset.texts == table["text"].tolist()


@SETTINGS
@given(table=tables(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_generated_csv__loads_aligned_or_is_refused_cleanly(table, encoding):
    _check(table, "csv", encoding)


@SETTINGS
@given(table=tables(), encoding=st.sampled_from(["utf-8", "utf-16"]))
def test_generated_jsonl__loads_aligned_or_is_refused_cleanly(table, encoding):
    _check(table, "jsonl", encoding)


@SETTINGS
@given(table=tables())
def test_generated_parquet__loads_aligned_or_is_refused_cleanly(table):
    _check(table, "parquet", "utf-8")
