"""Token activations of a run as an SAE reads them: token rows, the held-out split, shuffled batches.

An SAE learns from per-token activations (a run extracted with ``pooling="tokens"``). Rows of
a layer's (n_tokens, d) array are chosen by input, optionally without each input's first
token, split by whole inputs into training and held-out parts, and fed to the trainer as
shuffled (batch, d) tensors read from the memory-mapped array in blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.errors import LayerscopeError
from core.runs import check_layer
from core.validation import check_int

if TYPE_CHECKING:
    from core.activations import Activations


def check_tokens_run(acts: Activations, layer: str | None = None) -> None:
    """Raise LayerscopeError unless `acts` holds per-token activations (and `layer`, if given)."""
    if not acts.is_tokens:
        raise LayerscopeError(
            f"SAEs are trained on per-token activations, but run {acts.key} ({acts.model_name} on "
            f"{acts.dataset_name}) used pooling={acts.pooling!r}; extract the run again with pooling='tokens'"
        )
    if layer is not None:
        check_layer(acts, layer)


def token_rows(acts: Activations, inputs: np.ndarray | None = None, *, exclude_first_token: bool = True) -> np.ndarray:
    """(m,) sorted token rows of the given inputs (all inputs by default), without first tokens if asked."""
    offsets = acts.offsets
    inputs = np.arange(acts.n_inputs) if inputs is None else np.sort(np.asarray(inputs, dtype=np.int64))
    starts = offsets[inputs] + (1 if exclude_first_token else 0)
    ends = offsets[inputs + 1]
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = ends - starts
    rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    return rows.astype(np.int64)


def held_out_split(n_inputs: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_inputs, held_out_inputs): a seeded split of whole inputs, at least one in each part."""
    if n_inputs < 2:
        raise LayerscopeError(
            f"an SAE needs at least 2 inputs (one to train on, one to evaluate); the run has {n_inputs}"
        )
    order = np.random.default_rng(seed).permutation(n_inputs)
    n_held = min(n_inputs - 1, max(1, round(fraction * n_inputs)))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def training_split_tokens(acts: Activations, *, held_out_fraction: float, seed: int,
                          exclude_first_token: bool) -> int:
    """Tokens in the training split an SAE with these settings reads (train_sae_on_run's seeded split of inputs)."""
    train_inputs, _ = held_out_split(acts.n_inputs, held_out_fraction, seed)
    return int(token_rows(acts, train_inputs, exclude_first_token=exclude_first_token).size)


def training_epochs(training_tokens: int, batch_size: int, split_tokens: int) -> float:
    """How many times training reads its split: the tokens of its whole batches over the split's tokens.

    Training takes training_tokens // batch_size steps (at least one, SAEConfig.total_steps) of
    batch_size tokens each, drawn from the split and repeated once it is used up.
    """
    training_tokens = check_int("training_tokens", training_tokens, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    split_tokens = check_int("split_tokens", split_tokens, low=1)
    return max(1, training_tokens // batch_size) * batch_size / split_tokens


def activation_batches(
    values: np.ndarray,
    rows: np.ndarray,
    *,
    batch_size: int,
    seed: int = 0,
    epochs: int | None = None,
    shuffle: bool = True,
    buffer_bytes: int = 256 * 2**20,
) -> Iterator[torch.Tensor]:
    """Shuffled (batch_size, d) float32 batches of `values[rows]`, read from a memory map in blocks.

    Rows are read a block of neighbouring rows at a time (close to sequential on disk) and
    shuffled within a buffer of about `buffer_bytes`; block order is shuffled every epoch.
    epochs=None repeats forever. The last, smaller batch of a non-shuffled pass is kept.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        return
    d = values.shape[1]
    per_buffer = max(batch_size, int(buffer_bytes // (4 * d)) // batch_size * batch_size)
    blocks = [rows[i : i + per_buffer] for i in range(0, rows.size, per_buffer)]
    rng = np.random.default_rng(seed)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = rng.permutation(len(blocks)) if shuffle else np.arange(len(blocks))
        carry = np.zeros((0, d), dtype=np.float32)
        for b in order:
            data = np.asarray(values[blocks[b]], dtype=np.float32)
            if shuffle:
                data = data[rng.permutation(len(data))]
            data = np.concatenate([carry, data]) if carry.size else data
            n_full = len(data) // batch_size * batch_size
            for i in range(0, n_full, batch_size):
                yield torch.from_numpy(np.ascontiguousarray(data[i : i + batch_size]))
            carry = data[n_full:]
        if len(carry) and (not shuffle or epochs is not None and epoch == epochs - 1):
            yield torch.from_numpy(np.ascontiguousarray(carry))
        epoch += 1
