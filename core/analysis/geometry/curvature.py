"""Curvature of token trajectories: the mean turning angle between consecutive steps.

Hosseini & Fedorenko 2023 (``variant="signed"``, default) and Skean et al. 2024
(``variant="abs"``, angles of |v_{k+1}.v_k|, bounded by pi/2). Radians.

Degenerate steps (``degenerate``): with "skip" (default), an angle touching a zero-length
step (identical consecutive tokens) is left out, and an input with fewer than 3 tokens or
only zero-length steps has no curvature (NaN). With "zero" (variant "abs" only), such an
angle counts as 0 and such an input has curvature 0, as OFSkean/information_flow
``compute_curvature`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.analysis.arrays import as_matrix
from core.analysis.geometry import _rows
from core.device import pick_device
from core.errors import LayerscopeError
from core.validation import check_choice

CURVATURE_VARIANTS = ("signed", "abs")
CURVATURE_DEGENERATE = ("skip", "zero")  # zero-length steps and inputs under 3 tokens: left out, or 0 (Skean)


def check_degenerate(variant: str, degenerate: str, *, names: tuple[str, str] = ("variant", "degenerate")) -> str:
    """`degenerate` checked against CURVATURE_DEGENERATE; "zero" is Skean's convention, only for "abs".

    A signed angle at a zero-length step has no reference convention; "zero" there would invent one.
    """
    degenerate = check_choice(names[1], degenerate, CURVATURE_DEGENERATE)
    if degenerate == "zero" and variant != "abs":
        raise LayerscopeError(f"{names[1]}='zero' must go with {names[0]}='abs' (Skean et al.'s convention); "
                              f"got {names[0]}={variant!r}: use {names[1]}='skip' or {names[0]}='abs'")
    return degenerate


def _block_angles(rows: torch.Tensor, input_ids: np.ndarray, variant: str, degenerate: str) -> np.ndarray:
    """(rows - 2,) turning angle at each interior row of a float64 block, NaN where undefined.

    The angle at row r is between steps r-1 -> r and r -> r+1; it is NaN when either
    step crosses an input boundary, and at a zero-length step (identical consecutive
    tokens) NaN with degenerate="skip", 0 with "zero".
    """
    if len(rows) < 3:
        return np.empty(0)
    steps = torch.diff(rows, dim=0)  # (rows - 1, d)
    norms = torch.linalg.vector_norm(steps, dim=1)  # (rows - 1,)
    dots = torch.einsum("ij,ij->i", steps[1:], steps[:-1])  # (rows - 2,)
    cos = (dots / (norms[1:] * norms[:-1])).clamp(-1.0, 1.0)  # NaN/inf at zero steps: masked below
    angles = torch.arccos(cos)
    # arccos loses precision near 0 and pi; Kahan's formula there: 2 atan2(|a - b|, |a + b|), unit a, b
    sharp = torch.nonzero(cos.abs() > 0.9999).squeeze(1)
    if sharp.numel():
        a = steps[sharp] / norms[sharp, None]
        b = steps[sharp + 1] / norms[sharp + 1, None]
        angles[sharp] = 2.0 * torch.atan2(
            torch.linalg.vector_norm(b - a, dim=1), torch.linalg.vector_norm(b + a, dim=1)
        )
    angles = angles.cpu().numpy()
    inside = (input_ids[1:] == input_ids[:-1])[1:] & (input_ids[1:] == input_ids[:-1])[:-1]  # same input
    moving = norms.cpu().numpy() > 0
    nonzero = moving[1:] & moving[:-1]
    if variant == "abs":  # arccos(|cos|) as in Skean et al.
        angles = np.minimum(angles, np.pi - angles)
    angles[~nonzero] = 0.0 if degenerate == "zero" else np.nan
    angles[~inside] = np.nan
    return angles


def turning_angles(token_vectors: Any, *, variant: str = "signed", degenerate: str = "skip") -> np.ndarray:
    """Turning angle (radians) at each interior token of one trajectory.

    token_vectors: (T, d). Returns (T - 2,) (empty for T < 3); entry k is the angle
    between steps h_{k+1} - h_k and h_{k+2} - h_{k+1}; where a step has zero length it is
    NaN (degenerate="skip") or 0 (degenerate="zero", variant "abs" only).
    """
    variant = check_choice("variant", variant, CURVATURE_VARIANTS)
    degenerate = check_degenerate(variant, degenerate)
    X = as_matrix(token_vectors, "token_vectors")
    rows = _rows.load_rows(X, 0, len(X), torch.device("cpu"), "token_vectors")
    return _block_angles(rows, np.zeros(len(rows), dtype=np.int64), variant, degenerate)


def curvature(token_vectors: Any, *, variant: str = "signed", degenerate: str = "skip") -> float:
    """Mean turning angle (radians) of one token trajectory.

    token_vectors: (T, d). degenerate="skip": angles touching a zero-length step are left
    out of the mean; NaN when T < 3 or when every angle touches one. degenerate="zero"
    (variant "abs"): they count as 0, and T < 3 gives 0 (Skean et al.).
    """
    angles = turning_angles(token_vectors, variant=variant, degenerate=degenerate)
    if angles.size == 0 or np.isnan(angles).all():
        return 0.0 if degenerate == "zero" else float("nan")
    return float(np.nanmean(angles))


def curvature_per_input(
    X_tokens: Any,
    offsets: Any,
    *,
    variant: str = "signed",
    degenerate: str = "skip",
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, int]:
    """Curvature of every input of a tokens run.

    X_tokens: (n_tokens, d), inputs concatenated; offsets: (n_inputs + 1,) row starts.
    Returns (values (n_inputs,) radians, NaN for skipped inputs; number skipped).
    degenerate="skip": inputs with fewer than 3 tokens or only zero-length steps are skipped.
    degenerate="zero" (variant "abs"): zero-length steps give angle 0 and inputs of 1 or 2
    tokens curvature 0 (Skean et al.); only inputs without tokens are skipped.
    """
    variant = check_choice("variant", variant, CURVATURE_VARIANTS)
    degenerate = check_degenerate(variant, degenerate)
    X = as_matrix(X_tokens, "X_tokens")
    offsets = _rows.check_offsets(offsets, len(X))
    dev = pick_device(device)
    lengths = np.diff(offsets)
    values = np.full(len(lengths), np.nan)
    for i0, i1 in _rows.input_chunks(offsets, X.shape[1]):
        rows = _rows.load_rows(X, offsets[i0], offsets[i1], dev, "X_tokens")
        ids = np.repeat(np.arange(i1 - i0), lengths[i0:i1])
        angles = _block_angles(rows, ids, variant, degenerate)
        if angles.size == 0:
            continue
        owner = ids[1:-1]
        ok = ~np.isnan(angles)
        sums = np.bincount(owner[ok], weights=angles[ok], minlength=i1 - i0)
        counts = np.bincount(owner[ok], minlength=i1 - i0)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[i0:i1] = np.where(counts > 0, sums / counts, np.nan)
    if degenerate == "zero":  # 1 or 2 tokens: 0 (Skean: "0 if counter == 0"); no tokens: still no input
        values[np.isnan(values) & (lengths > 0)] = 0.0
    return values, int(np.isnan(values).sum())
