"""Steering a causal LM: add alpha * scale * direction to one layer's output while it generates greedily.

Where the direction is added (`position`):
* "all": every position the layer computes. The first forward of `generate` runs the whole
  (left-padded) prompt, so every prompt position is steered; each later step runs only the
  newest token (the rest comes from the KV cache, computed steered), so every generated
  token is steered too.
* "last": only the last position of each forward: the last prompt token in the first
  forward, then the newest token of each cached step. Earlier prompt positions are left alone.

How far alpha reaches (`scale`):
* "prompts" (default): alpha = 1 adds the median L2 norm of the layer's residual stream over
  the prompts' real tokens (measured unsteered). The median, not the mean: causal LMs give a
  few tokens (the first one, an attention sink) norms 10-100x the others, and a mean over them
  (or over mean-pooled vectors that include them) overstates the typical token's norm that
  much; smollm2's middle layers are the case (median ~150, mean ~1,200).
* "run": the direction's own `scale`, the mean norm of its source run's rows.

Prompts run as one left-padded batch per alpha (the last column is every prompt's last token),
greedy (`do_sample=False`), so a result is reproducible. What is measured, per alpha:
* `kl`: KL(p_steered || p_unsteered) of the first generated token, nats, per prompt; the
  unsteered distribution comes from the same batched call without any hook, so alpha = 0
  gives exactly 0;
* the top_k tokens whose first-token log-probability, averaged over prompts, rose / fell most;
* with a `ReadoutProbe`: `readout` (A, R), the mean over prompts of P(class) read from the
  steered stream at each readout layer (the steered layer and later ones), at the positions
  each generated token was predicted from (the last prompt position, then every generated
  token but the last, up to the end-of-sequence token), pooled per prompt as the probe's run
  was pooled; and `continuation_readout` (A,), the probe at the last readout layer on each
  continuation alone re-read by the unsteered model (extraction's forward and pooling),
  averaged over prompts with a non-empty continuation.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.errors import LayerscopeError
from core.hooks import capture_layers, replace_output, run_captured, split_layer
from core.interventions.readout import ReadoutProbe, pool_rows
from core.interventions.records import POSITIONS, STEERING_VERSION, Direction, SteeringResult
from core.progress import Progress, report
from core.validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    from core.models import LoadedModel
    from core.store import Store

MAX_NEW_TOKENS = 512  # generation is one forward per token: beyond this, use a script
SCALES = ("prompts", "run")  # what alpha = 1 adds: the prompts' median token norm at the layer, or the direction's scale


def steer(
    model: LoadedModel,
    direction: Direction,
    prompts: str | Sequence[str],
    alphas: Sequence[float],
    *,
    position: str = "all",
    scale: str = "prompts",
    max_new_tokens: int = 20,
    top_k: int = 10,
    readout: ReadoutProbe | None = None,
    direction_key: str = "",
    store: Store | None = None,
    progress: Progress | None = None,
) -> SteeringResult:
    """Greedy continuations of `prompts` with alpha * size * direction.vector added, per alpha.

    alphas: (A,) finite numbers, in units of `size` (0 = unsteered).
    scale: what `size` is: "prompts" (the median token norm of the layer over the prompts, unsteered)
        or "run" (direction.scale, the mean row norm of the direction's source run).
    readout: a probe fitted on a run of the same model (core.interventions.readout.fit_readout).
    direction_key: the direction's store key, recorded and used in the cache key.
    store: when given, the result is cached there.
    progress: called as progress(done, total, what) after each generated token of each alpha.
    Returns a SteeringResult: continuations (A, P), kl (A, P), readout (A, R), ...
    """
    prompts, alphas = check_steering(model, direction, prompts, alphas)
    position = check_choice("position", position, POSITIONS)
    scale = check_choice("scale", scale, SCALES)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=1, high=MAX_NEW_TOKENS)
    top_k = check_int("top_k", top_k, low=1, high=len(model.tokenizer))
    readout_layers = check_readout(model, direction, readout)

    def compute() -> SteeringResult:
        return _steer(model, direction, prompts, alphas, position, scale, max_new_tokens, top_k,
                      readout, readout_layers, direction_key, progress)

    if store is None:
        return compute()
    params = {
        "model": model.identity,
        "direction": direction_key or vector_hash(direction),
        "layer": direction.layer,
        "scale": scale,
        "direction_scale": direction.scale,
        "prompts": list(prompts),
        "alphas": [float(a) for a in alphas],
        "position": position,
        "max_new_tokens": max_new_tokens,
        "top_k": top_k,
        "readout": readout.spec if readout is not None else None,
        "version": STEERING_VERSION,
    }
    return store.cached("steering", params, compute, SteeringResult)


def vector_hash(direction: Direction) -> str:
    """sha256 prefix of the direction's vector, for keys of directions that were not stored."""
    return hashlib.sha256(np.ascontiguousarray(direction.vector, dtype=np.float32).tobytes()).hexdigest()[:16]


# ----- checks ----------------------------------------------------------------------------
def check_steering(
    model: LoadedModel, direction: Direction, prompts: Any, alphas: Any
) -> tuple[tuple[str, ...], np.ndarray]:
    """(prompts, alphas (A,) float64) once the model, the direction's layer and width, the prompts and alphas are usable."""
    if not model.is_causal_lm or model.tokenizer is None:
        raise LayerscopeError(f"steering needs a causal LM; {model.name} is an encoder")
    weights = (direction.model or {}).get("weights")
    if weights and weights != model.weights_hash:
        raise LayerscopeError(
            f"direction {direction.name or direction.layer!r} was made on model "
            f"{direction.model.get('name')!r} (weights {weights[:12]}), not on {model.name} "
            f"(weights {model.weights_hash[:12]}); steer the model it came from"
        )
    width = layer_width(model, direction.layer)
    if direction.width != width:
        raise LayerscopeError(
            f"direction width {direction.width} does not match layer {direction.layer!r} of {model.name}, "
            f"which is {width} wide; make the direction at this model's layer"
        )
    if not np.all(np.isfinite(direction.vector)) or not np.isfinite(direction.scale):
        raise LayerscopeError(f"direction {direction.name or direction.layer!r} has non-finite values; make it again")
    if isinstance(prompts, str):
        prompts = (prompts,)
    prompts = tuple(prompts)
    if not prompts:
        raise LayerscopeError("prompts=() must hold at least one prompt")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise LayerscopeError(f"prompt {i} ({prompt!r}) is empty; give some text to continue")
    if isinstance(alphas, (int, float)):
        alphas = (alphas,)
    alphas = tuple(alphas)
    if not alphas:
        raise LayerscopeError("alphas=() must hold at least one number, e.g. -1, 0, 1")
    values = np.array([check_number("alpha", a) for a in alphas], dtype=np.float64)
    return prompts, values


def layer_width(model: LoadedModel, layer: str) -> int:
    """Width of `layer`'s output (or input), read from a one-token forward."""
    path, _ = split_layer(layer)
    if path not in dict(model.module.named_modules()):
        stream = model.default_layers()
        raise LayerscopeError(
            f"layer {layer!r} is not a layer of {model.name}; its residual stream is "
            f"{stream[0]}, ..., {stream[-1]} ({len(stream)} layers)"
        )
    ids = torch.tensor([[model.tokenizer.eos_token_id or 0]], device=model.device)
    with torch.inference_mode(), capture_layers(model.module, [layer], lambda _n, t: t.shape[-1]) as captured:
        run_captured(lambda: (model.forward_module or model.module)(input_ids=ids, use_cache=False))
    if layer not in captured:
        raise LayerscopeError(f"layer {layer!r} is not run by {model.name}'s forward pass; pick another layer")
    return int(captured[layer])


def layer_order(model: LoadedModel) -> Callable[[str], tuple[int, int]]:
    """A sort key putting layers in the order the forward pass reaches them (a module's input before its output)."""
    index = {name: i for i, (name, _) in enumerate(model.module.named_modules())}

    def key(layer: str) -> tuple[int, int]:
        path, is_input = split_layer(layer)
        return index.get(path, -1), 0 if is_input else 1

    return key


def check_readout(model: LoadedModel, direction: Direction, readout: ReadoutProbe | None) -> tuple[str, ...]:
    """The probe's layers at or after the steered layer, in forward order (() without a probe)."""
    if readout is None:
        return ()
    key = layer_order(model)
    later = sorted((layer for layer in readout.layers if key(layer) >= key(direction.layer)), key=key)
    if not later:
        raise LayerscopeError(
            f"the readout probe has no layer at or after the steered layer {direction.layer!r} "
            f"(it has {', '.join(readout.layers)}); fit it on a run holding later layers"
        )
    return tuple(later)


# ----- generation ------------------------------------------------------------------------
def left_padded(model: LoadedModel, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (P, T) of the prompts, left-padded so the last column is every prompt's last token."""
    tokenizer = model.tokenizer
    ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id(model), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, tokens in enumerate(ids):
        input_ids[row, width - len(tokens):] = torch.tensor(tokens)
        mask[row, width - len(tokens):] = 1
    return {"input_ids": input_ids.to(model.device), "attention_mask": mask.to(model.device)}


def pad_id(model: LoadedModel) -> int:
    tokenizer = model.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def generate_greedy(model: LoadedModel, inputs: dict[str, torch.Tensor], max_new_tokens: int,
                    on_step: Callable[[int], None] | None = None) -> Any:
    """model.generate greedily, returning sequences and the raw logits of every step."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _OnStep(StoppingCriteria):  # the one per-token callback generate offers
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            if on_step is not None:
                on_step(input_ids.shape[1] - inputs["input_ids"].shape[1])
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    with torch.inference_mode():
        return model.module.generate(
            **inputs, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_id(model),
            return_dict_in_generate=True, output_logits=True, stopping_criteria=StoppingCriteriaList([_OnStep()]),
        )


@contextlib.contextmanager
def steering_hook(model: LoadedModel, direction: Direction, alpha: float, position: str,
                  size: float | None = None) -> Iterator[None]:
    """While the block runs, direction.layer's output gets alpha * size * vector added (at `position`).

    size: what alpha = 1 adds (default direction.scale).
    """
    size = direction.scale if size is None else size
    delta = torch.as_tensor(alpha * size * np.asarray(direction.vector, dtype=np.float64))

    def add(hidden: torch.Tensor) -> torch.Tensor:  # (batch, tokens, d)
        step = delta.to(device=hidden.device, dtype=hidden.dtype)
        if position == "all":
            return hidden + step
        steered = hidden.clone()
        steered[:, -1] = steered[:, -1] + step
        return steered

    with replace_output(model.module, direction.layer, add):
        yield


@contextlib.contextmanager
def newest_positions(model: LoadedModel, layers: Sequence[str]) -> Iterator[dict[str, list[np.ndarray]]]:
    """Collect, per layer, the last position of every forward: layer -> list of (batch, d) arrays, one per step."""
    seen: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    with contextlib.ExitStack() as stack:
        for layer in layers:
            def keep(hidden: torch.Tensor, layer: str = layer) -> None:  # returns None: the tensor is left as it is
                seen[layer].append(hidden[:, -1].detach().float().cpu().numpy())
            stack.enter_context(replace_output(model.module, layer, keep))
        yield seen


def prompt_norm(model: LoadedModel, inputs: dict[str, torch.Tensor], layer: str) -> float:
    """Median L2 norm of `layer`'s tensor over the prompts' real (unpadded) tokens, unsteered."""
    def norms(_layer: str, hidden: torch.Tensor) -> np.ndarray:
        real = inputs["attention_mask"].bool()
        return hidden.float().norm(dim=-1)[real].cpu().numpy()

    with torch.inference_mode(), capture_layers(model.module, [layer], norms) as captured:
        run_captured(lambda: (model.forward_module or model.module)(**inputs, use_cache=False))
    return float(np.median(captured[layer]))


def _steer(model, direction, prompts, alphas, position, scale, max_new_tokens, top_k,
           readout, readout_layers, direction_key, progress) -> SteeringResult:
    A, P = len(alphas), len(prompts)
    inputs = left_padded(model, prompts)
    size = prompt_norm(model, inputs, direction.layer) if scale == "prompts" else float(direction.scale)
    prompt_width = inputs["input_ids"].shape[1]
    eos = model.tokenizer.eos_token_id
    base = torch.log_softmax(generate_greedy(model, inputs, 1).logits[0].double(), dim=-1)  # (P, V)
    continuations = np.empty((A, P), dtype=object)
    kl = np.zeros((A, P))
    shifts = []
    readout_values = np.full((A, len(readout_layers)), np.nan)
    for i, alpha in enumerate(alphas):
        def on_step(done: int, i: int = i, alpha: float = alpha) -> None:
            report(progress, i * max_new_tokens + done, A * max_new_tokens,
                   f"alpha {i + 1} of {A} (alpha={alpha:g}), {P} prompts: token {done} of {max_new_tokens}")

        with steering_hook(model, direction, alpha, position, size), newest_positions(model, readout_layers) as seen:
            out = generate_greedy(model, inputs, max_new_tokens, on_step)
        logp = torch.log_softmax(out.logits[0].double(), dim=-1)  # (P, V) first generated token
        kl[i] = (logp.exp() * (logp - base)).sum(-1).cpu().numpy()
        shifts.append((logp - base).mean(0).cpu().numpy())  # (V,)
        generated = out.sequences[:, prompt_width:].cpu().numpy()  # (P, N)
        lengths = real_lengths(generated, eos)
        for j in range(P):
            continuations[i, j] = model.tokenizer.decode(generated[j, : lengths[j]], skip_special_tokens=True)
        for r, layer in enumerate(readout_layers):
            steps = np.stack(seen[layer][: generated.shape[1]], axis=1)  # (P, N, d): the stream each token came from
            pooled = np.stack([pool_rows(steps[j, : lengths[j]], readout.read_pooling) for j in range(P)])
            readout_values[i, r] = float(readout.probability(layer, pooled).mean())
    gained, gained_shift, lost, lost_shift = top_shifts(model, np.stack(shifts), top_k)
    cont_readout = (continuation_readout(model, readout, readout_layers[-1], continuations)
                    if readout is not None else np.full(A, np.nan))
    return SteeringResult(
        model_name=model.name,
        layer=direction.layer,
        direction_name=direction.name,
        direction_key=direction_key,
        position=position,
        scale=size,
        alphas=np.asarray(alphas, dtype=np.float64),
        prompts=tuple(prompts),
        continuations=continuations.astype(str),
        kl=np.maximum(kl, 0.0),  # rounding can leave -1e-17 where the distributions agree
        gained_tokens=gained,
        gained_shift=gained_shift,
        lost_tokens=lost,
        lost_shift=lost_shift,
        readout_label=readout.label if readout is not None else "",
        readout_class=readout.positive if readout is not None else "",
        readout_layers=tuple(readout_layers),
        readout=readout_values,
        continuation_readout=cont_readout,
        params={
            "max_new_tokens": max_new_tokens,
            "top_k": top_k,
            "decoding": "greedy",
            "scale": scale,
            "direction_scale": float(direction.scale),
            "batching": "left-padded, one batch per alpha",
            "direction_source": direction.source,
            "direction_provenance": dict(direction.provenance),
            "readout": readout.spec if readout is not None else None,
            "readout_positions": "the position each generated token was predicted from, pooled per prompt",
            "version": STEERING_VERSION,
        },
    )


def real_lengths(generated: np.ndarray, eos: int | None) -> np.ndarray:
    """(P,) generated tokens per row up to and including the first end-of-sequence token (padding after it excluded)."""
    P, N = generated.shape
    if eos is None:
        return np.full(P, N)
    hits = generated == eos
    return np.where(hits.any(1), hits.argmax(1) + 1, N)


def top_shifts(model: LoadedModel, shifts: np.ndarray, top_k: int) -> tuple[np.ndarray, ...]:
    """(gained, gained_shift, lost, lost_shift), each (A, k), from mean log-probability shifts (A, V)."""
    order = np.argsort(-shifts, axis=1, kind="stable")
    up, down = order[:, :top_k], order[:, ::-1][:, :top_k]
    decode = np.vectorize(lambda t: model.tokenizer.decode([int(t)]), otypes=[object])
    return (decode(up).astype(str), np.take_along_axis(shifts, up, 1),
            decode(down).astype(str), np.take_along_axis(shifts, down, 1))


def continuation_readout(model: LoadedModel, readout: ReadoutProbe, layer: str, continuations: np.ndarray) -> np.ndarray:
    """(A,) mean P(class) of the continuations (A, P), each read alone by the unsteered model at `layer`."""
    from core.extract.feeders import TextFeeder
    from core.extract.pooling import pool

    A, P = continuations.shape
    texts = [str(t) for t in continuations.ravel()]
    keep = [k for k, t in enumerate(texts) if t.strip()]  # an empty continuation has nothing to read
    probs = np.full(A * P, np.nan)
    if keep:
        feeder = TextFeeder(model, [texts[k] for k in keep], model.max_length)
        batch = 32
        for start in range(0, len(keep), batch):
            rows = np.arange(start, min(start + batch, len(keep)))
            inputs, mask = feeder.batch(rows)

            def on_output(_layer: str, hidden: torch.Tensor, mask: torch.Tensor = mask) -> np.ndarray:
                return pool(hidden.float(), mask, readout.read_pooling).cpu().numpy()  # (batch, d)

            with torch.inference_mode(), capture_layers(model.module, [layer], on_output) as captured:
                run_captured(lambda inputs=inputs: feeder.forward(inputs))
            probs[[keep[k] for k in rows]] = readout.probability(layer, captured[layer])
    probs = probs.reshape(A, P)
    with np.errstate(all="ignore"):
        return np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in probs])
