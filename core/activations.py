"""`Activations`: one complete run read back from the store.

A run folder holds::

    meta.json         model, dataset, layers, pooling, dtype, shapes, checksums, the user's name for the run
    table.parquet     one row per input: the input text (or image reference) and labels
    layers/NNN.npy    one array per layer; (n_inputs, d) when pooled,
                      (n_tokens, d) for pooling="tokens" (inputs concatenated in order)
    lengths.npy       (n_inputs,) tokens per input (1 for inputs without tokens)
    offsets.npy       (n_inputs + 1,) start of each input's tokens   [tokens only]
    token_ids.npy     (n_tokens,) token ids                          [tokens only]
    tokens.json       (n_tokens,) token strings                      [tokens only]

Arrays are memory-mapped on read with `allow_pickle=False`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from core.data.naming import display_name
from core.errors import LayerscopeError
from core.tokens import TOKEN_MARKS, display_tokens  # noqa: F401 - public here too


class Activations:
    """Per-layer activations of one model over one dataset.

    `acts[layer]` is a read-only memory-mapped float array: (n_inputs, d) for
    pooled runs, (n_tokens, d) for `pooling="tokens"`.
    """

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta

    def __repr__(self) -> str:
        return (
            f"Activations(key={self.key!r}, name={self.name!r}, model={self.model_name!r}, "
            f"dataset={self.dataset_name!r}, layers={len(self.layer_names)}, pooling={self.pooling!r}, n_inputs={self.n_inputs})"
        )

    # ----- identity ----------------------------------------------------------
    @property
    def key(self) -> str:
        return self.path.name

    @property
    def layer_names(self) -> list[str]:
        return list(self.meta["layers"])

    @property
    def pooling(self) -> str:
        return self.meta["pooling"]

    @property
    def is_tokens(self) -> bool:
        return self.pooling == "tokens"

    @property
    def model_name(self) -> str:
        return self.meta["model"]["name"]

    @property
    def name(self) -> str | None:
        """The user's name for the run (display only, never part of its key), or None."""
        return self.meta.get("name") or None

    @property
    def dataset_name(self) -> str:
        """The dataset as titles show it: a bundled set's name or the user's file name."""
        return display_name(self.meta["dataset"]["name"])

    @property
    def dataset_spec(self) -> str:
        """Where `core.load_dataset` reads the inputs again: a bundled set's name or a path."""
        return self.meta["dataset"]["name"]

    @property
    def n_inputs(self) -> int:
        return int(self.meta["n_inputs"])

    @property
    def modality(self) -> str:
        return self.meta["model"]["modality"]

    def dim(self, layer: str) -> int:
        return int(self.meta["dims"][layer])

    # ----- arrays ------------------------------------------------------------
    def __getitem__(self, layer: str) -> np.ndarray:
        files = self.meta["layer_files"]
        if layer not in files:
            raise LayerscopeError(
                f"layer {layer!r} is not in run {self.key}; it has {', '.join(self.layer_names)}"
            )
        return self._load(files[layer])

    def __iter__(self):
        return iter(self.layer_names)

    def __len__(self) -> int:
        return len(self.layer_names)

    def _load(self, rel: str) -> np.ndarray:
        path = self.path / rel
        if not path.is_file():
            raise LayerscopeError(
                f"run {self.key} is missing {rel}; its files were removed from the workspace. "
                "Extract it again."
            )
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:  # Python objects (a pickle) or a malformed header: never unpickled
            raise LayerscopeError(
                f"run {self.key}: {rel} is not a plain numeric array ({err}); refused. "
                "Run `python -m core verify --repair` and extract it again."
            ) from None

    def pooled(self, layer: str) -> np.ndarray:
        """(n_inputs, d) one vector per input: the layer itself, or the mean of each input's tokens."""
        values = self[layer]
        if not self.is_tokens:
            return values
        sums = np.add.reduceat(np.asarray(values, dtype=np.float64), self.offsets[:-1], axis=0)
        return (sums / self.lengths[:, None]).astype(np.float32)

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """(n_inputs,) number of tokens of each input."""
        return np.asarray(self._load("lengths.npy"))

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """(n_inputs + 1,) start of each input's rows in a tokens run."""
        self._require_tokens("offsets")
        return np.asarray(self._load("offsets.npy"))

    @functools.cached_property
    def token_ids(self) -> np.ndarray:
        self._require_tokens("token_ids")
        return np.asarray(self._load("token_ids.npy"))

    @functools.cached_property
    def tokens(self) -> list[str]:
        """Token strings, one per row of a tokens run."""
        self._require_tokens("tokens")
        return json.loads((self.path / "tokens.json").read_text())

    def input_rows(self, i: int) -> slice:
        """Rows of input `i` in a tokens run."""
        offsets = self.offsets
        return slice(int(offsets[i]), int(offsets[i + 1]))

    def input_tokens(self, layer: str, i: int) -> np.ndarray:
        """(T_i, d) token vectors of input `i` at `layer` (tokens runs only)."""
        return np.asarray(self[layer][self.input_rows(i)])

    def _require_tokens(self, what: str) -> None:
        if not self.is_tokens:
            raise LayerscopeError(
                f"{what} needs per-token activations, but run {self.key} used pooling={self.pooling!r}; "
                "extract with pooling='tokens'"
            )

    # ----- inputs and labels -------------------------------------------------
    @functools.cached_property
    def table(self):
        """pandas DataFrame, one row per input: text (or image path) and label columns."""
        import pandas as pd

        path = self.path / "table.parquet"
        if not path.is_file():
            raise LayerscopeError(f"run {self.key} is missing table.parquet; extract it again")
        return pd.read_parquet(path)

    @property
    def text_column(self) -> str | None:
        return self.meta["dataset"].get("text_column")

    @property
    def label_columns(self) -> list[str]:
        return list(self.meta["dataset"].get("label_columns", []))

    @property
    def texts(self) -> list[str]:
        """Input texts (for image runs: a short description of each image)."""
        column = self.text_column
        if column is None or column not in self.table:
            return [f"input {i}" for i in range(self.n_inputs)]
        return self.table[column].astype(str).tolist()

    def image(self, i: int) -> np.ndarray | None:
        """The i-th input image as a (H, W) or (H, W, 3) uint8 array, or None for text runs."""
        if (self.path / "images.npy").is_file():
            return np.asarray(np.load(self.path / "images.npy", mmap_mode="r", allow_pickle=False)[i])
        if "path" in self.table.columns and self.modality == "image":
            from PIL import Image

            with Image.open(self.table["path"].iloc[i]) as img:
                return np.asarray(img.convert("RGB"))
        return None

    def labels(self, column: str) -> np.ndarray:
        """(n_inputs,) values of one label column."""
        if column not in self.table.columns:
            raise LayerscopeError(
                f"label column {column!r} is not in run {self.key}; "
                f"it has {', '.join(self.label_columns) or 'no label columns'}"
            )
        return self.table[column].to_numpy()
