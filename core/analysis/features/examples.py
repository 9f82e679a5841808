"""A latent's activating tokens in context: windows of tokens around given token rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.analysis.sae import SparseAutoencoder
from core.device import pick_device
from core.tokens import display_tokens
from core.validation import check_int

if TYPE_CHECKING:
    from core.activations import Activations

readable_tokens = display_tokens  # the SAE pages call core.tokens.display_tokens by this name


@dataclass(frozen=True)
class FeatureExample:
    """One token where a latent fires, with the window of tokens around it."""

    row: int  # token row in the run
    input_index: int
    activation: float  # the latent's activation at `row`
    tokens: tuple[str, ...]  # the window's tokens, readable (word-start marks turned into spaces)
    activations: tuple[float, ...]  # the latent's activation on each token of the window
    focus: int  # position of `row` in the window
    text: str  # the whole input
    labels: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def feature_examples(
    sae: SparseAutoencoder,
    acts: Activations,
    layer: str,
    feature: int,
    rows: Sequence[int],
    *,
    window: int = 8,
    exclude_first_token: bool = True,
    device: str | torch.device | None = None,
) -> list[FeatureExample]:
    """Context windows (up to `window` tokens each side, within the input) around token `rows` for one latent."""
    feature = check_int("feature", feature, low=0, high=sae.d_sae - 1)
    rows = [int(r) for r in rows if int(r) >= 0]
    if not rows:
        return []
    offsets = acts.offsets
    inputs = np.searchsorted(offsets, rows, side="right") - 1
    spans = [(max(int(offsets[i]), r - window), min(int(offsets[i + 1]), r + window + 1)) for r, i in zip(rows, inputs)]
    needed = np.unique(np.concatenate([np.arange(a, b) for a, b in spans]))
    dev = pick_device(device)
    sae = sae.to(dev).eval()
    x = torch.from_numpy(np.asarray(acts[layer][needed], dtype=np.float32)).to(dev)
    column = sae.encode(x)[:, feature].cpu().numpy()
    if exclude_first_token:
        column[np.isin(needed, offsets[:-1])] = 0.0  # the SAE never saw first tokens
    value_of = dict(zip(needed.tolist(), column.tolist()))
    all_tokens, texts, table = acts.tokens, acts.texts, acts.table
    out = []
    for r, i, (a, b) in zip(rows, inputs, spans):
        first, last = int(offsets[i]), int(offsets[i + 1])
        tokens = display_tokens(all_tokens[first:last])[a - first : b - first]
        out.append(FeatureExample(
            row=r, input_index=int(i), activation=float(value_of[r]), tokens=tuple(tokens),
            activations=tuple(float(value_of[j]) for j in range(a, b)), focus=r - a, text=texts[int(i)],
            labels={c: _plain(table[c].iloc[int(i)]) for c in acts.label_columns},
        ))
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
