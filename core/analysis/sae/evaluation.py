"""How good an SAE is: reconstruction on held-out tokens, and the next-token loss with it spliced in.

Reconstruction: fraction of variance explained 1 - SSE / SST, MSE, mean L0 and the share of
latents never active on the evaluation tokens. For a causal LM: the next-token loss with the
layer's output replaced by its reconstruction, against the clean loss and the loss with the
layer zero-ablated (hooks through `core.hooks.replace_output`, removed when done).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from core.analysis.sae.model import SparseAutoencoder
from core.device import pick_device
from core.errors import LayerscopeError
from core.hooks import replace_output

if TYPE_CHECKING:
    from core.models import LoadedModel

SPLICE_MODES = ("clean", "sae", "zero")  # the layer's own output, the SAE's reconstruction, zeros


@dataclass(frozen=True)
class SAEEvaluation:
    """Held-out quality of one SAE; the loss fields are None unless a causal LM was run."""

    fve: float  # fraction of variance explained, 1 - SSE / SST
    mse: float  # mean squared error per token, summed over dimensions
    l0: float  # mean number of active latents per token
    dead_share: float  # share of latents never active on the evaluation tokens
    n_dead: int
    n_tokens: int
    loss_clean: float | None = None  # next-token cross-entropy (nats) of the model as is
    loss_with_sae: float | None = None  # with the layer's output replaced by the SAE reconstruction
    loss_zero_ablation: float | None = None  # with the layer's output set to zero
    n_loss_texts: int = 0

    @property
    def loss_increase(self) -> float | None:
        """L_sae - L_clean in nats, or None without a next-token loss."""
        if self.loss_clean is None or self.loss_with_sae is None:
            return None
        return self.loss_with_sae - self.loss_clean

    @property
    def loss_recovered(self) -> float | None:
        """(L_zero - L_sae) / (L_zero - L_clean): 1 = the reconstruction loses nothing, 0 = no better than zeros."""
        if None in (self.loss_clean, self.loss_with_sae, self.loss_zero_ablation):
            return None
        gap = self.loss_zero_ablation - self.loss_clean
        return (self.loss_zero_ablation - self.loss_with_sae) / gap if gap > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """Fields plus loss_increase and loss_recovered, as stored in an SAE entry's meta."""
        return {**asdict(self), "loss_increase": self.loss_increase, "loss_recovered": self.loss_recovered}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SAEEvaluation:
        """The evaluation of `values`; derived and unknown keys are ignored."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


@torch.no_grad()
def evaluate_sae(
    sae: SparseAutoencoder, batches: Iterable[torch.Tensor], *, device: str | torch.device | None = None
) -> SAEEvaluation:
    """FVE, MSE, L0 and dead share of `sae` over (batch, d_in) tensors, accumulated in float64."""
    dev = pick_device(device)
    sae = sae.to(dev).eval()
    n = 0
    sum_x = torch.zeros(sae.d_in, dtype=torch.float64, device=dev)
    sum_sq = torch.zeros((), dtype=torch.float64, device=dev)
    sse = torch.zeros((), dtype=torch.float64, device=dev)
    active = torch.zeros((), dtype=torch.float64, device=dev)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=dev)
    for batch in batches:
        x = batch.to(dev, torch.float32)
        if x.ndim != 2 or x.shape[1] != sae.d_in:
            raise LayerscopeError(f"the SAE takes {sae.d_in}-wide inputs; got a batch of shape {tuple(x.shape)}")
        normed, state = sae.normalise_in(x)
        acts = sae.activate(sae.pre_activations(normed))
        recon = sae.normalise_out(sae.decode(acts), state)
        x64 = x.double()
        n += x.shape[0]
        sum_x += x64.sum(0)
        sum_sq += x64.pow(2).sum()
        sse += (x64 - recon.double()).pow(2).sum()
        active += (acts > 0).sum()
        fired |= (acts > 0).any(0)
    if n == 0:
        raise LayerscopeError("no evaluation tokens: the held-out split is empty")
    sst = float(sum_sq - sum_x.pow(2).sum() / n)
    n_dead = int((~fired).sum())
    return SAEEvaluation(
        fve=1.0 - float(sse) / sst if sst > 0 else float("nan"),
        mse=float(sse) / n,
        l0=float(active) / n,
        dead_share=n_dead / sae.d_sae,
        n_dead=n_dead,
        n_tokens=n,
    )


def next_token_losses(
    sae: SparseAutoencoder,
    model: LoadedModel,
    layer: str,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    exclude_first_token: bool = True,
) -> dict[str, float]:
    """Mean next-token cross-entropy (nats per predicted token) over `texts`: clean, SAE-spliced, zero-ablated.

    The SAE reconstruction replaces `layer`'s output at every position (the first token's is
    kept when the SAE was trained without first tokens); the rest of the model runs as usual.
    """
    if not model.is_causal_lm or model.tokenizer is None:
        raise LayerscopeError(f"model {model.name!r} is not a causal LM; the next-token loss needs one such as smollm2")
    model.resolve_layers([layer])  # a module path or "<module path>:input"; a clear error otherwise
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise LayerscopeError("no texts to measure the next-token loss on")
    spliced = copy.deepcopy(sae).to(model.device).eval()  # the caller's SAE stays where it is
    tokenizer = model.tokenizer
    max_length = int(max_length or model.max_length)
    ids = [tokenizer(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    ids = [i for i in ids if len(i) >= 2]
    if not ids:
        raise LayerscopeError("every text has fewer than 2 tokens; the next-token loss needs at least one prediction")
    mode = SPLICE_MODES[0]

    def splice(hidden: torch.Tensor) -> torch.Tensor | None:
        """hidden: (batch, tokens, d) -> its replacement in the current mode (None: unchanged)."""
        if mode == "clean":
            return None
        if hidden.shape[-1] != spliced.d_in:
            raise LayerscopeError(
                f"layer {layer!r} outputs width {hidden.shape[-1]} but the SAE takes d_in={spliced.d_in}"
            )
        if mode == "sae":
            new = spliced(hidden.reshape(-1, hidden.shape[-1]).float()).reshape(hidden.shape).to(hidden.dtype)
        else:
            new = torch.zeros_like(hidden)
        if exclude_first_token:
            new[:, 0] = hidden[:, 0]
        return new

    totals = dict.fromkeys(SPLICE_MODES, 0.0)
    count = 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    with torch.inference_mode(), replace_output(model.module, layer, splice):
        for input_ids, mask in padded_batches(ids, batch_size, pad, model.device):
            targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            for mode in SPLICE_MODES:  # `splice` reads the current mode
                logits = model.module(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                    ignore_index=-100, reduction="sum",
                )
                totals[mode] += float(loss)
            count += int((targets != -100).sum())
    return {"clean": totals["clean"] / count, "sae": totals["sae"] / count, "zero": totals["zero"] / count,
            "n_texts": len(ids)}


def padded_batches(
    ids: Sequence[Sequence[int]], batch_size: int, pad: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, attention_mask) pairs of shape (batch, longest), right-padded with `pad`."""
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        width = max(len(i) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        yield input_ids.to(device), mask.to(device)
