"""Prompt entropy: the matrix entropy over the tokens of each input (Skean et al.)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.analysis.arrays import as_matrix
from core.analysis.geometry import _rows
from core.analysis.geometry.spectrum import check_alpha, check_entropy_variant, clean_spectrum, renyi_entropy
from core.device import pick_device


def prompt_entropy(
    X_tokens: Any,
    offsets: Any,
    *,
    alpha: float = 1.0,
    variant: str = "exact",
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Matrix entropy over the tokens of each input (Skean et al. prompt entropy).

    X_tokens: (n_tokens, d); offsets: (n_inputs + 1,). Returns (n_inputs,); normalised by
    log(min(T_i, d)). NaN for inputs with fewer than 2 distinct tokens (undefined).
    variant: "exact" or "skean", as in `matrix_entropy` (each input's own Gram side).
    Inputs are batched by length (zero padding adds only zero eigenvalues).
    """
    alpha = check_alpha(alpha)
    clamp = check_entropy_variant("variant", variant) == "skean"
    X = as_matrix(X_tokens, "X_tokens")
    offsets = _rows.check_offsets(offsets, len(X))
    d = X.shape[1]
    dev = pick_device(device)
    lengths = np.diff(offsets)
    values = np.full(len(lengths), np.nan)
    for i0, i1 in _rows.input_chunks(offsets, d):
        rows = _rows.load_rows(X, offsets[i0], offsets[i1], dev, "X_tokens")
        starts = offsets[i0:i1] - offsets[i0]
        lens = lengths[i0:i1]
        order = np.argsort(lens, kind="stable")
        pos = 0
        while pos < len(order):  # a batch of inputs of similar length that fits the chunk budget
            end = pos + 1
            tall = lens[order[pos]] > d  # one Gram side per batch: "skean" clamps on the input's own side
            while (end < len(order) and (end - pos + 1) * lens[order[end]] * d * 8 <= _rows.CHUNK_BYTES
                   and (lens[order[end]] > d) == tall):
                end += 1
            group = order[pos:end]
            pos = end
            width = int(lens[group].max())
            if width < 2:
                continue
            Z = torch.zeros((len(group), width, d), dtype=torch.float64, device=dev)  # zero-padded tokens
            for b, i in enumerate(group):
                if lens[i]:
                    block = rows[starts[i] : starts[i] + lens[i]]
                    Z[b, : lens[i]] = _rows.prepare_rows(block, _rows.exact_mean(block), unit_rows=True)
            gram = Z @ Z.mT if width <= d else Z.mT @ Z  # (batch, m, m), m = min(width, d)
            if clamp:
                gram = gram.clamp(min=0.0)
            eig = clean_spectrum(torch.linalg.eigvalsh(gram).cpu().numpy())
            entropy = renyi_entropy(eig, alpha)
            if normalize:
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = np.log(np.minimum(lens[group], d).astype(np.float64))
                    entropy = np.where(lens[group] >= 2, entropy / scale, np.nan)
            values[i0 + group] = entropy + 0.0
    return values
