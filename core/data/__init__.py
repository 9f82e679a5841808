"""Datasets: bundled demo sets and the user's own files.

`load_dataset(spec, text_column=..., label_columns=...)` returns a `Dataset`:
one row per input in `table` (text or image reference plus labels) and a
content fingerprint that goes into every store key built from it. A dataset is
shown by its `display_name` (a bundled set's name, or the user's file name) and
keyed by its content (`identity`), wherever it was read from (core.data.naming).

Specs:
    demo:sentences, demo:cities, demo:words, demo:digits   bundled, offline
    path/to/file.csv | .jsonl | .json | .parquet | .txt     tables or one input per line
    path/to/folder/                                         images, one class per subfolder
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.files import IMAGE_SUFFIXES, TABLE_SUFFIXES, check_image, read_table  # noqa: F401 - re-exported
from core.data.naming import dataset_identity, display_name
from core.errors import LayerscopeError
from core.validation import check_int


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs and labels, one row of `table` per input."""

    name: str  # the spec it was loaded from, e.g. "demo:cities" or a file path
    modality: str  # "text" or "image"
    table: pd.DataFrame  # inputs and labels
    text_column: str | None  # column holding the text (for images: a caption column)
    label_columns: tuple[str, ...]  # columns offered as labels
    fingerprint: str  # sha256 over the content that reaches the model and the labels
    images: np.ndarray | None = field(default=None, repr=False)  # (n, H, W) or (n, H, W, 3) uint8, in-memory images
    image_column: str | None = None  # column of image file paths (image folders)
    description: str = ""  # one line for the UI

    def __len__(self) -> int:
        return len(self.table)

    @property
    def display_name(self) -> str:
        """The name people see: a bundled set's name, or the user's file or folder name."""
        return display_name(self.name)

    @property
    def identity(self) -> dict[str, str]:
        """What a store key takes from the dataset: its content fingerprint (see core.data.naming)."""
        return dataset_identity(self.name, self.fingerprint)

    @property
    def texts(self) -> list[str]:
        if self.text_column is None:
            raise LayerscopeError(f"dataset {self.display_name!r} has no text column")
        return self.table[self.text_column].tolist()

    def load_images(self, indices) -> list:
        """PIL images (RGB) for the given row indices."""
        from PIL import Image

        out = []
        for i in indices:
            if self.images is not None:
                array = self.images[i]
                if array.ndim == 2:
                    array = np.repeat(array[:, :, None], 3, axis=2)
                out.append(Image.fromarray(array.astype(np.uint8)))
            else:
                with Image.open(self.table[self.image_column].iloc[i]) as img:
                    out.append(img.convert("RGB"))
        return out


def fingerprint_table(table: pd.DataFrame, extra: bytes = b"") -> str:
    """sha256 of a table's columns and values (row order matters)."""
    digest = hashlib.sha256()
    digest.update(repr(list(table.columns)).encode())
    hashed = pd.util.hash_pandas_object(table, index=False).to_numpy()
    digest.update(hashed.tobytes())
    digest.update(extra)
    return digest.hexdigest()[:20]


def load_dataset(
    spec: str | Path,
    *,
    text_column: str | None = None,
    label_columns: list[str] | tuple[str, ...] | None = None,
    limit: int | None = None,
) -> Dataset:
    """Load a bundled demo set or a file/folder as a `Dataset`.

    text_column: column holding the inputs; default "text" if present, else
        the first column of strings (refused when that is one of `label_columns`).
    label_columns: columns offered as labels; default every other column.
    limit: keep only the first `limit` rows.
    """
    spec_str = str(spec)
    if spec_str.startswith("demo:"):
        from core.data.demo import load_demo

        dataset = load_demo(spec_str)
        if text_column is None and label_columns is None and limit is None:
            return dataset
        table = dataset.table
        images = dataset.images
        modality = dataset.modality
        text_column = text_column or dataset.text_column
        label_columns = list(label_columns) if label_columns is not None else list(dataset.label_columns)
        description = dataset.description
    else:
        path = Path(spec_str).expanduser()
        if not path.exists():
            raise LayerscopeError(
                f"dataset {spec_str!r} does not exist; give a demo name "
                f"({', '.join(demo_names())}), a CSV/JSONL/Parquet/text file or an image folder"
            )
        if path.is_dir():
            return _image_folder(path, limit=limit)
        table = read_table(path)
        duplicated = sorted({str(c) for c in table.columns[table.columns.duplicated()]})
        if duplicated:
            raise LayerscopeError(f"dataset file {path.name!r} has duplicate column names ({', '.join(duplicated)}); "
                                  "give every column its own name")
        images = None
        modality = "text"
        description = f"{path.name}: {len(table)} rows"
    shown = display_name(spec_str)  # messages name the user's file, not a workspace path
    if limit is not None:
        limit = check_int("limit", limit, low=1)
        table = table.iloc[:limit].reset_index(drop=True)
        images = images[:limit] if images is not None else None
    if len(table) == 0:
        raise LayerscopeError(f"dataset {shown!r} is empty; it needs at least one row")
    text_column = _pick_text_column(table, text_column, shown, required=modality == "text", labels=label_columns)
    label_columns = _pick_label_columns(table, label_columns, text_column, shown)
    if modality == "text":
        _check_texts(table[text_column], text_column, shown)
    _check_labels(table, label_columns, shown)
    table = table[[c for c in [text_column, *label_columns] if c is not None]].reset_index(drop=True)
    extra = images.tobytes() if images is not None else b""
    return Dataset(
        name=spec_str,
        modality=modality,
        table=table,
        text_column=text_column,
        label_columns=tuple(label_columns),
        fingerprint=fingerprint_table(table, extra),
        images=images,
        description=description,
    )


def demo_names() -> list[str]:
    from core.data.demo import DEMOS

    return list(DEMOS)


def _pick_text_column(
    table: pd.DataFrame, text_column: str | None, spec: str, *, required: bool, labels: Sequence[str] | None = None
) -> str | None:
    """The column of inputs: the one named, else "text", else the first column of strings.

    labels: the label columns the user named (None: not named); the first column of strings
    is not taken as text when it is one of them.
    """
    columns = ", ".join(map(str, table.columns))
    if text_column is not None:
        if text_column not in table.columns:
            raise LayerscopeError(f"text_column={text_column!r} is not in dataset {spec!r}; columns are: {columns}")
        return text_column
    if "text" in table.columns:
        return "text"
    for column in table.columns:
        if table[column].dtype == object or pd.api.types.is_string_dtype(table[column]):
            if labels is not None and column in list(labels):
                raise LayerscopeError(
                    f"dataset {spec!r} has no column named 'text', and its first column of strings, {column!r}, "
                    f"is one of the label columns you named ({', '.join(map(str, labels))}); name the column "
                    f"holding the inputs with text_column (--text-column) (columns are: {columns})"
                )
            return column
    if required:
        raise LayerscopeError(
            f"dataset {spec!r} has no column of text; name one with text_column (columns are: {columns})"
        )
    return None


def _pick_label_columns(table, label_columns, text_column, spec) -> list[str]:
    if label_columns is None:
        return [c for c in table.columns if c != text_column]
    missing = [c for c in label_columns if c not in table.columns]
    if missing:
        raise LayerscopeError(
            f"label column {missing[0]!r} is not in dataset {spec!r}; "
            f"columns are: {', '.join(map(str, table.columns))}"
        )
    return list(dict.fromkeys(label_columns))


def _check_texts(column: pd.Series, name: str, spec: str) -> None:
    bad = [i for i, v in enumerate(column.tolist()) if not isinstance(v, str)]
    if bad:
        i = bad[0]
        raise LayerscopeError(
            f"text column {name!r} of dataset {spec!r} must hold strings; row {i} holds "
            f"{column.iloc[i]!r} ({len(bad)} non-string rows in all)"
        )
    empty = [i for i, v in enumerate(column.tolist()) if not v.strip()]
    if empty:
        raise LayerscopeError(
            f"text column {name!r} of dataset {spec!r} has an empty text in row {empty[0]} "
            f"({len(empty)} empty rows in all); remove them"
        )


def _check_labels(table: pd.DataFrame, label_columns: Sequence[str], spec: str) -> None:
    """Labels are numbers, strings, booleans or missing: lists and objects cannot be classes."""
    for column in label_columns:
        if table[column].dtype != object:
            continue
        bad = [i for i, v in enumerate(table[column].tolist()) if isinstance(v, (list, dict, tuple, set))]
        if bad:
            raise LayerscopeError(
                f"label column {column!r} of dataset {spec!r} must hold numbers or strings; row {bad[0]} holds "
                f"{table[column].iloc[bad[0]]!r}; name the label columns to use with label_columns (--label)"
            )


def _image_folder(path: Path, *, limit: int | None) -> Dataset:
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    rows = []
    for folder in classes:
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({"path": str(file.resolve()), "label": folder.name, "text": f"{folder.name}/{file.name}"})
    if not rows:
        raise LayerscopeError(
            f"image folder {str(path)!r} has no images in class subfolders; expected "
            f"{path}/<class>/<image>{{{','.join(IMAGE_SUFFIXES)}}}"
        )
    table = pd.DataFrame(rows)
    if limit is not None:
        table = table.iloc[:limit].reset_index(drop=True)
    digest = hashlib.sha256()
    for file in table["path"]:
        digest.update(Path(file).read_bytes())
        check_image(Path(file), path)
    return Dataset(
        name=str(path),
        modality="image",
        table=table,
        text_column="text",
        label_columns=("label",),
        fingerprint=fingerprint_table(table[["text", "label"]], digest.digest()),
        image_column="path",
        description=f"{path.name}: {len(table)} images in {len(classes)} classes",
    )
