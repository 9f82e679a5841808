"""Steering overhead: smollm2 greedy generation time with the steering hook against without it.

The same left-padded batch of prompts generates the same number of tokens greedily
(`min_new_tokens = max_new_tokens`, so an early end-of-sequence cannot make one side
shorter), with and without `steering_hook` (alpha = 1 along a fixed unit direction
scaled to 1, at model.layers.15, every position). The two sides alternate, each
repeated; the best time of each is kept (the machine may be shared), and the overhead
is best(steered) / best(plain) - 1.

    python bench/steering.py [--prompts 8] [--tokens 32] [--repeats 5] [--position all|last] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import numpy as np
import torch

import core
from core.interventions.records import Direction
from core.interventions.steer import left_padded, pad_id, steering_hook
from results import result

LAYER = "model.layers.15"
TARGET = 0.10
PROMPTS = [
    "The food at this place was",
    "I have to say the service",
    "My holiday this year was",
    "The new phone I bought is",
    "Honestly, the match last night was",
    "The weather this weekend has been",
    "My visit to the doctor was",
    "Overall, my experience with the bank was",
]


def timed_generate(model, inputs: dict[str, torch.Tensor], tokens: int, hook) -> float:
    """Seconds of one greedy generate of exactly `tokens` tokens inside `hook`."""
    start = time.perf_counter()
    with hook, torch.inference_mode():
        model.module.generate(**inputs, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens,
                              pad_token_id=pad_id(model))
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--position", default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workspace", help="where smollm2's converted weights are kept (default a temporary folder)")
    args = parser.parse_args()

    workspace = args.workspace or tempfile.mkdtemp(prefix="bench-steering-")
    model = core.load_model("smollm2", device=args.device, workspace=workspace)
    width = model.module.config.hidden_size
    vector = np.random.default_rng(0).standard_normal(width).astype(np.float32)
    direction = Direction(vector=vector / np.linalg.norm(vector), layer=LAYER, model=model.identity,
                          source="mean_difference", scale=1.0, name="random unit direction")
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    inputs = left_padded(model, prompts)
    timed_generate(model, inputs, args.tokens, contextlib.nullcontext())  # warm-up
    plain, steered = [], []
    for _ in range(args.repeats):
        plain.append(timed_generate(model, inputs, args.tokens, contextlib.nullcontext()))
        steered.append(timed_generate(model, inputs, args.tokens, steering_hook(model, direction, 1.0, args.position)))
    ratio = min(steered) / min(plain)
    print(f"smollm2 on {model.device}, {len(prompts)} prompts x {args.tokens} tokens, greedy, best of {args.repeats}, "
          f"{torch.get_num_threads()} threads, position={args.position}")
    print(f"plain   {min(plain):.3f} s  (all: {', '.join(f'{t:.3f}' for t in plain)})")
    print(f"steered {min(steered):.3f} s  (all: {', '.join(f'{t:.3f}' for t in steered)})")
    print(f"ratio steered / plain = {ratio:.3f}")
    overhead = ratio - 1.0
    result("steering overhead", f"{100 * overhead:.1f}%", f"<= {100 * TARGET:.0f}%", overhead <= TARGET)


if __name__ == "__main__":
    main()
