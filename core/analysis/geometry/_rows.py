"""Reading a layer's rows in float64 blocks that fit a memory budget.

Activations may be memory-mapped and larger than memory; every geometry metric reads
them through these helpers, a block of rows (or of whole inputs) at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from core.analysis.arrays import non_finite_error
from core.errors import LayerscopeError

CHUNK_BYTES = 32 * 2**20  # float64 working set per block of rows
WHAT = "geometry metrics"  # who needs finite values, for error messages


def load_rows(X: np.ndarray, start: int, stop: int, device: torch.device, name: str) -> torch.Tensor:
    """Rows start:stop of X (array or memmap) as a float64 tensor on `device`; raises on NaN or inf."""
    block = torch.from_numpy(np.array(X[start:stop])).to(device=device, dtype=torch.float64)
    finite = torch.isfinite(block)
    if not bool(finite.all()):
        raise non_finite_error(name, int((~finite).sum()), WHAT)
    return block + 0.0  # -0.0 -> 0.0


def row_chunks(n_rows: int, d: int) -> Iterator[tuple[int, int]]:
    """Ranges [start, stop) of rows of width d that fit `CHUNK_BYTES` in float64."""
    step = max(1, CHUNK_BYTES // max(1, 8 * d))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def exact_mean(block: torch.Tensor) -> torch.Tensor:
    """(d,) column mean of a (rows, d) float64 block; constant columns get their exact value.

    A float mean of n copies of c need not equal c; centring constant data would then
    leave round-off residue that unit-normalisation blows up into random directions.
    """
    constant = block.amin(dim=0) == block.amax(dim=0)
    return torch.where(constant, block[0], block.mean(dim=0))


def column_mean(X: np.ndarray, device: torch.device, name: str) -> torch.Tensor:
    """(d,) exact-for-constant-columns mean of X, read in chunks (X may be a memmap)."""
    n, d = X.shape
    total = torch.zeros(d, dtype=torch.float64, device=device)
    low = torch.full((d,), math.inf, dtype=torch.float64, device=device)
    high = torch.full((d,), -math.inf, dtype=torch.float64, device=device)
    for start, stop in row_chunks(n, d):
        block = load_rows(X, start, stop, device, name)
        total += block.sum(dim=0)
        low = torch.minimum(low, block.amin(dim=0))
        high = torch.maximum(high, block.amax(dim=0))
    return torch.where(low == high, low, total / n)


def prepare_rows(block: torch.Tensor, mean: torch.Tensor, unit_rows: bool) -> torch.Tensor:
    """Centre and optionally unit-normalise rows of a float64 block; zero rows stay zero."""
    block = block - mean
    if unit_rows:
        norms = torch.linalg.vector_norm(block, dim=1, keepdim=True)
        block = torch.where(norms > 0, block / torch.where(norms > 0, norms, 1.0), 0.0)
    return block


def check_offsets(offsets: Any, n_rows: int) -> np.ndarray:
    """offsets (n_inputs + 1,) of a tokens run as int64, checked against its `n_rows` token rows."""
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or offsets.size < 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise LayerscopeError(f"offsets must be a 1-D integer array (n_inputs + 1,); got shape {offsets.shape}, "
                              f"dtype {offsets.dtype}")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != n_rows or np.any(np.diff(offsets) < 0):
        raise LayerscopeError(
            f"offsets must start at 0, never decrease and end at the number of token rows ({n_rows}); "
            f"got start {offsets[0]}, end {offsets[-1]}"
        )
    return offsets


def input_chunks(offsets: np.ndarray, d: int) -> Iterator[tuple[int, int]]:
    """Ranges [i0, i1) of whole inputs whose rows fit the chunk budget (at least one input)."""
    limit = max(1, CHUNK_BYTES // max(1, 8 * d))
    n = len(offsets) - 1
    i0 = 0
    while i0 < n:
        i1 = int(np.searchsorted(offsets, offsets[i0] + limit, side="right")) - 1
        i1 = min(n, max(i1, i0 + 1))
        yield i0, i1
        i0 = i1


def input_means(X: np.ndarray, offsets: np.ndarray, device: torch.device) -> np.ndarray:
    """(n_inputs, d) float64 mean of each input's tokens (inputs with no tokens are NaN)."""
    lengths = np.diff(offsets)
    means = np.full((len(lengths), X.shape[1]), np.nan)
    for i0, i1 in input_chunks(offsets, X.shape[1]):
        rows = load_rows(X, offsets[i0], offsets[i1], device, "activations")
        ids = torch.from_numpy(np.repeat(np.arange(i1 - i0), lengths[i0:i1])).to(device)
        sums = torch.zeros((i1 - i0, X.shape[1]), dtype=torch.float64, device=device).index_add_(0, ids, rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[i0:i1] = sums.cpu().numpy() / lengths[i0:i1, None]
    return means
