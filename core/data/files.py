"""Reading the user's files: tables in their text encodings, and images checked before extraction.

A table is refused, with one line naming the file and what is wrong, rather than read
into something other than what the file says: another encoding is not guessed, a row
longer than the header does not shift columns, and JSON values keep their JSON types.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.errors import LayerscopeError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def read_table(path: Path) -> pd.DataFrame:
    """Read CSV/TSV/JSONL/JSON/Parquet, or a .txt file as one input per line.

    Text files are UTF-8 (a UTF-8 or UTF-16 byte-order mark is honoured); other encodings
    are refused rather than guessed. JSON values keep their JSON types ("123" stays a string).
    """
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise LayerscopeError(
            f"dataset file {path.name!r} has suffix {suffix!r}; supported: {', '.join(TABLE_SUFFIXES)} "
            "or a folder of images"
        )
    encoding = _text_encoding(path) if suffix != ".parquet" else None
    try:
        if suffix in (".csv", ".tsv"):
            return _read_delimited(path, sep="," if suffix == ".csv" else "\t", encoding=encoding)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", encoding=encoding, dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        lines = [line.rstrip("\n") for line in path.read_text(encoding=encoding).splitlines()]
        return pd.DataFrame({"text": [line for line in lines if line.strip()]})
    except LayerscopeError:
        raise
    except UnicodeError as err:
        where = f" (byte 0x{err.object[err.start]:02x} at position {err.start})" if isinstance(
            err, UnicodeDecodeError) and err.start < len(err.object) else ""
        raise LayerscopeError(
            f"dataset file {path.name!r} is not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text{where}; save it as UTF-8 "
            "(UTF-16 is read when it starts with a byte-order mark)"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LayerscopeError(f"could not parse dataset file {path.name!r} as {suffix[1:]}: {first_line}") from err
    except Exception as err:  # pyarrow raises its own error types for damaged Parquet
        raise LayerscopeError(f"could not parse dataset file {path.name!r} as {suffix[1:]}: {err}") from err


def _text_encoding(path: Path) -> str:
    """UTF-16 when the file starts with its byte-order mark, else UTF-8 (a UTF-8 mark is dropped)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8-sig"


def _read_delimited(path: Path, *, sep: str, encoding: str) -> pd.DataFrame:
    """A CSV/TSV table; a row with more fields than the header is refused instead of shifting columns."""
    import warnings

    with warnings.catch_warnings():
        # index_col=False stops pandas from taking the first column as an index when a row is
        # longer than the header; it then warns that the extra fields would be lost
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(path, sep=sep, encoding=encoding, index_col=False)
        except pd.errors.ParserWarning:
            raise LayerscopeError(
                f"dataset file {path.name!r} has a row with more fields than its header; every row needs "
                f"one field per column (quote fields that hold {sep!r})"
            ) from None


def check_image(file: Path, folder: Path) -> None:
    """Refuse a file that PIL cannot read as an image, naming it, before anything is extracted."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            img.verify()  # reads the headers and checksums without decoding the pixels
    except Exception as err:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, DecompressionBombError)
        raise LayerscopeError(
            f"image folder {folder.name!r}: {file.relative_to(folder)} is not a readable image "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}); remove or replace it"
        ) from None
