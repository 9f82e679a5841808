"""Activation extraction: hooks + pooling + batching, written straight to the store.

`extract(model, dataset, layers=..., pooling=...)` returns `Activations`. The
same request twice reads the store. Inputs are sorted by length into batches
(less padding), each batch's pooled vectors are written to disk at their rows
before the next batch runs, so memory stays flat however many inputs there
are, and an interrupted run resumes from its last finished batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core.activations import Activations
from core.data import Dataset, load_dataset
from core.device import pick_dtype
from core.diskspace import reporting_full_disk, unallocated_bytes
from core.errors import DamagedEntryError, LayerscopeError
from core.extract.feeders import ModuleFeeder, TextFeeder
from core.extract.pooling import POOLINGS, pool
from core.extract.writer import NpyWriter
from core.hooks import capture_layers, run_captured
from core.models import LoadedModel, load_model
from core.progress import Progress
from core.store import Store, checksum_files, make_key, read_json, write_json_atomic
from core.validation import check_choice, check_int

logger = logging.getLogger(__name__)

def run_key(model: LoadedModel, dataset: Dataset, layers: list[str], pooling: str, dtype: str, max_length: int) -> str:
    """The store key of an extraction: every input that changes the arrays."""
    return make_key(
        {
            "what": "activations",
            "model": model.identity,
            "dataset": dataset.identity,  # its content, not where it was read from
            "layers": layers,
            "pooling": pooling,
            "dtype": dtype,
            "max_length": max_length,
        }
    )


def extract(
    model: LoadedModel | str,
    dataset: Dataset | str,
    *,
    layers: str | Sequence[str] = "all",
    pooling: str = "mean",
    batch_size: int = 32,
    device: str | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
) -> Activations:
    """Per-layer activations of `model` on `dataset`, from the store or computed now.

    layers: "all" (the residual stream: hidden_states[0] + every block), or layer names: module
        paths (a module's output) or "<module path>:input" (what it receives).
    pooling: "mean" over real tokens, "first" (CLS), "last", "max", or
        "tokens" (every token's vector, with token strings and offsets).
    dtype: "float32" (default); "float16"/"bfloat16" autocast on a GPU.
    progress: called as progress(batches_done, batches_total, message).
    """
    store = store or Store()
    if isinstance(model, str):
        model = load_model(model, device=device, workspace=store.root)
    if isinstance(dataset, str):
        dataset = load_dataset(dataset)
    check_choice("pooling", pooling, POOLINGS)
    if model.modality != dataset.modality:
        raise LayerscopeError(
            f"model {model.name!r} takes {model.modality} inputs but dataset {dataset.name!r} holds "
            f"{dataset.modality}s; pick a {model.modality} dataset"
        )
    if pooling not in model.poolings:
        raise LayerscopeError(
            f"pooling={pooling!r} does not fit model {model.name!r} (no tokenizer: its outputs are pooled "
            f"over space or patches, or already vectors); choose one of {', '.join(model.poolings)}"
        )
    batch_size = check_int("batch_size", batch_size, low=1)
    layer_paths = model.resolve_layers(layers)
    torch_dtype = pick_dtype(dtype, model.device)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    max_length = int(max_length or model.max_length)
    key = run_key(model, dataset, layer_paths, pooling, dtype_name, max_length)
    with store.lock(key):
        if store.has_run(key):
            try:
                return store.open_run(key)
            except DamagedEntryError as err:
                moved = store.quarantine(store.run_dir(key))
                logger.warning("%s; moved to %s and recomputing", err, moved)
                if progress:
                    progress(0, 1, f"{err}; recomputing")
        extraction = _Extraction(model, dataset, layer_paths, pooling, torch_dtype, max_length, batch_size, store, key)
        # a full disk keeps the .partial run (the same command resumes it) and says how much is left to write
        with reporting_full_disk(store.root, f"extracting run {key}", place="the workspace",
                                 needed=lambda: unallocated_bytes(store.partial_dir(key)) or None):
            return extraction.run(progress)


class _Extraction:
    def __init__(self, model, dataset, layers, pooling, torch_dtype, max_length, batch_size, store, key) -> None:
        self.model = model
        self.dataset = dataset
        self.layers = layers
        self.pooling = pooling
        self.torch_dtype = torch_dtype
        self.max_length = max_length
        self.batch_size = batch_size
        self.store = store
        self.key = key
        self.partial = store.partial_dir(key)
        if model.tokenizer is not None:
            self.feeder = TextFeeder(model, dataset.texts, max_length)
        else:
            self.feeder = ModuleFeeder(model, dataset)
        self.lengths = self.feeder.lengths
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.writers: dict[str, NpyWriter] = {}
        self.fits: int | None = None  # largest batch known to fit in GPU memory after an out-of-memory

    # plan: batches of input indices, longest first, so an out-of-memory shows at once
    def _plan(self) -> list[list[int]]:
        order = np.argsort(-self.lengths, kind="stable")
        return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]

    def _rows(self) -> int:
        return int(self.offsets[-1]) if self.pooling == "tokens" else len(self.dataset)

    def _open_writers(self, dims: dict[str, int], *, create: bool) -> None:
        (self.partial / "layers").mkdir(exist_ok=True)
        for i, layer in enumerate(self.layers):
            path = self.partial / "layers" / f"{i:03d}.npy"
            self.writers[layer] = NpyWriter(path, (self._rows(), dims[layer]), create=create)

    def run(self, progress: Progress | None) -> Activations:
        start = time.time()
        state = self._resume_state()
        if state is None:
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True)
            state = {"plan": self._plan(), "done": 0, "dims": None}
            np.save(self.partial / "lengths.npy", self.lengths, allow_pickle=False)
            write_json_atomic(self.partial / "progress.json", state)
        else:
            logger.info("resuming run %s at batch %d of %d", self.key, state["done"], len(state["plan"]))
            self._open_writers(state["dims"], create=False)
        plan = state["plan"]
        try:
            for b in range(state["done"], len(plan)):
                outputs = self._run_batch(np.asarray(plan[b]))
                if state["dims"] is None:
                    state["dims"] = {layer: _width(outputs[layer]) for layer in self.layers}
                    self._open_writers(state["dims"], create=True)
                self._write(np.asarray(plan[b]), outputs)
                state["done"] = b + 1
                write_json_atomic(self.partial / "progress.json", state)
                if progress:
                    progress(b + 1, len(plan), f"batch {b + 1}/{len(plan)}")
        except LayerscopeError:
            self._close_writers()
            shutil.rmtree(self.partial, ignore_errors=True)
            raise
        except BaseException:
            self._close_writers()  # the partial entry stays: a rerun resumes from state["done"]
            raise
        self._close_writers()
        return self._finalise(state["dims"], time.time() - start)

    def _resume_state(self) -> dict | None:
        path = self.partial / "progress.json"
        if not path.is_file():
            return None
        try:
            state = read_json(path)
        except (OSError, json.JSONDecodeError):
            return None
        if sum(len(b) for b in state.get("plan", [])) != len(self.dataset):
            return None
        if not state.get("done") or not state.get("dims"):
            return None  # nothing finished yet: start afresh
        return state

    def _run_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Forward one batch; on CUDA out-of-memory, halve it and retry.

        The size that fitted is remembered, so later batches are split up front
        instead of failing again.
        """
        if self.fits is not None and len(indices) > self.fits:
            size = self.fits  # may shrink again while the parts run
            parts = [self._run_batch(indices[i : i + size]) for i in range(0, len(indices), size)]
            return {layer: _concat_rows(*(part[layer] for part in parts)) for layer in parts[0]}
        try:
            return self._forward(indices)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(indices) == 1:
                raise LayerscopeError(
                    f"one input (row {int(indices[0])}) does not fit in GPU memory; lower max_length or use the CPU"
                ) from None
            self.fits = len(indices) // 2
            logger.warning("CUDA out of memory at batch size %d; continuing with batches of %d", len(indices), self.fits)
            return self._run_batch(indices)

    def _forward(self, indices: np.ndarray) -> dict[str, Any]:
        inputs, mask = self.feeder.batch(indices)

        def on_output(_layer: str, hidden: torch.Tensor):
            if self.pooling == "tokens":
                if hidden.ndim != 3:
                    raise LayerscopeError(
                        f"pooling='tokens' needs (batch, tokens, d) outputs; layer {_layer!r} gives "
                        f"{tuple(hidden.shape)}"
                    )
                hidden = hidden.float().cpu().numpy()  # (batch, tokens, d)
                return [hidden[row, : self.lengths[i]] for row, i in enumerate(indices)]
            return pool(hidden.float(), mask, self.pooling).cpu().numpy()  # (batch, d)

        autocast = (
            torch.autocast(device_type="cuda", dtype=self.torch_dtype)
            if self.model.device.type == "cuda" and self.torch_dtype != torch.float32
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast, capture_layers(self.model.module, self.layers, on_output) as captured:
            run_captured(lambda: self.feeder.forward(inputs))
        missing = [layer for layer in self.layers if layer not in captured]
        if missing:
            raise LayerscopeError(
                f"layer {missing[0]!r} was not run by the model's forward pass; pick another layer"
            )
        return dict(captured)

    def _write(self, indices: np.ndarray, outputs: dict[str, Any]) -> None:
        for layer, writer in self.writers.items():
            values = outputs[layer]
            for row, i in enumerate(indices):
                start = int(self.offsets[i]) if self.pooling == "tokens" else int(i)
                writer.write_rows(start, values[row] if self.pooling == "tokens" else values[row : row + 1])

    def _close_writers(self) -> None:
        for writer in self.writers.values():
            with contextlib.suppress(OSError):
                writer.close()
        self.writers = {}

    def _finalise(self, dims: dict[str, int], elapsed: float) -> Activations:
        import core

        folder = self.partial
        table = self.dataset.table.copy()
        table.to_parquet(folder / "table.parquet", index=False)
        if self.dataset.images is not None:
            np.save(folder / "images.npy", self.dataset.images, allow_pickle=False)
        if self.pooling == "tokens":
            ids = np.fromiter((t for ids in self.feeder.ids for t in ids), dtype=np.int64, count=int(self.offsets[-1]))
            np.save(folder / "token_ids.npy", ids, allow_pickle=False)
            np.save(folder / "offsets.npy", self.offsets, allow_pickle=False)
            tokens = self.model.tokenizer.convert_ids_to_tokens(ids.tolist())
            (folder / "tokens.json").write_text(json.dumps(tokens))
        (folder / "progress.json").unlink()
        device = self.model.device
        meta = {
            "key": self.key,
            "model": {
                **self.model.identity,
                "description": self.model.description,
                "is_causal_lm": self.model.is_causal_lm,
            },
            "dataset": {
                "name": self.dataset.name,
                "fingerprint": self.dataset.fingerprint,
                "modality": self.dataset.modality,
                "text_column": self.dataset.text_column,
                "label_columns": list(self.dataset.label_columns),
                "description": self.dataset.description,
            },
            "layers": self.layers,
            "layer_files": {layer: f"layers/{i:03d}.npy" for i, layer in enumerate(self.layers)},
            "dims": dims,
            "pooling": self.pooling,
            "dtype": str(self.torch_dtype).removeprefix("torch."),
            "device": str(device),
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "n_inputs": len(self.dataset),
            "n_rows": self._rows(),
            "n_truncated": self.feeder.n_truncated,
            "has_images": self.dataset.images is not None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "elapsed_s": round(elapsed, 3),
            "layerscope_version": core.__version__,
        }
        meta["checksums"] = checksum_files(folder)
        write_json_atomic(folder / "meta.json", meta)
        final = self.store.run_dir(self.key)
        if final.exists():
            shutil.rmtree(final)
        os.replace(folder, final)
        return Activations(final, meta)


def _width(values) -> int:
    return int((values[0] if isinstance(values, list) else values).shape[-1])


def _concat_rows(*parts):
    if isinstance(parts[0], list):
        return [row for part in parts for row in part]
    return np.concatenate(parts)
