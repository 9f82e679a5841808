"""What each latent writes to the logits: its decoder direction through a causal LM's unembedding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.analysis.sae import SparseAutoencoder
from core.errors import LayerscopeError

if TYPE_CHECKING:
    from core.models import LoadedModel


@dataclass(frozen=True, eq=False)
class LogitEffects:
    """Tokens each latent's decoder direction promotes / suppresses through the unembedding. (F, k) arrays."""

    promoted_ids: np.ndarray
    promoted_values: np.ndarray
    suppressed_ids: np.ndarray  # most negative first
    suppressed_values: np.ndarray
    vocab_ids: np.ndarray  # (U,) ids that appear above
    vocab_strings: np.ndarray  # (U,) their decoded strings

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """Decoded strings of token `ids` (ids that appear in this result)."""
        index = np.searchsorted(self.vocab_ids, np.asarray(ids))
        return [str(s) for s in self.vocab_strings[index]]

    def for_feature(self, feature: int) -> dict[str, list[tuple[str, float]]]:
        """{"promoted": [(token, logit), ...], "suppressed": [...]} of one latent."""
        return {
            "promoted": list(zip(self.tokens(self.promoted_ids[feature]), self.promoted_values[feature].tolist())),
            "suppressed": list(zip(self.tokens(self.suppressed_ids[feature]),
                                   self.suppressed_values[feature].tolist())),
        }


@torch.no_grad()
def logit_effects(sae: SparseAutoencoder, model: LoadedModel, *, top_k: int = 10, block: int = 256) -> LogitEffects:
    """W_dec (scaled by the final norm's gain) @ W_U^T per latent: its top promoted and suppressed tokens.

    The final norm's centring and rescaling depend on the whole residual, so only its
    elementwise gain is applied (the usual "logit effect" of a direction).
    """
    from core.analysis.lens import _decode_each, find_final_norm, find_unembedding

    if not model.is_causal_lm or model.tokenizer is None:
        raise LayerscopeError(
            f"model {model.name!r} is not a causal LM; logit effects need an unembedding (e.g. smollm2)"
        )
    _, norm = find_final_norm(model.module)
    _, head = find_unembedding(model.module)
    W_U = head.weight  # (V, d)
    if W_U.shape[1] != sae.d_in:
        raise LayerscopeError(f"the unembedding of {model.name!r} takes width {W_U.shape[1]}, the SAE d_in={sae.d_in}")
    gain = getattr(norm, "weight", None)
    W_dec = sae.W_dec.detach().to(W_U.device, W_U.dtype)  # (F, d)
    if isinstance(gain, torch.Tensor) and gain.shape == (sae.d_in,):
        W_dec = W_dec * gain
    k = int(min(top_k, W_U.shape[0]))
    parts: dict[str, list[torch.Tensor]] = {"pi": [], "pv": [], "si": [], "sv": []}
    for start in range(0, sae.d_sae, block):
        logits = (W_dec[start : start + block] @ W_U.T).float()  # (block, V)
        up, down = logits.topk(k, dim=1), logits.topk(k, dim=1, largest=False)
        parts["pi"].append(up.indices.cpu())
        parts["pv"].append(up.values.cpu())
        parts["si"].append(down.indices.cpu())
        parts["sv"].append(down.values.cpu())
    joined = {name: torch.cat(chunks).numpy() for name, chunks in parts.items()}
    vocab = np.unique(np.concatenate([joined["pi"].ravel(), joined["si"].ravel()]))
    return LogitEffects(
        promoted_ids=joined["pi"].astype(np.int64), promoted_values=joined["pv"].astype(np.float32),
        suppressed_ids=joined["si"].astype(np.int64), suppressed_values=joined["sv"].astype(np.float32),
        vocab_ids=vocab.astype(np.int64),
        vocab_strings=np.array(_decode_each(model.tokenizer, vocab.tolist()), dtype=str),
    )
