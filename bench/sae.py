"""SAE training throughput against the machine's own dense matmul peak, and the gallery statistics pass.

A TopK SAE (d = 384, width 8x = 3072, k = 32) trained with SAETrainer on real minilm token
activations (layer encoder.layer.3 of the demo sentences, ~20k tokens). Reported, all in one
run with one torch thread count:

- the measured dense float32 matmul throughput for the SAE's three big products at the
  training batch size B: (B x d) @ (d x F) (encoder forward), (d x B) @ (B x F) (grad of W_enc),
  (B x F) @ (F x d) (grad of the encoder input), each timed before and after the training steps
  (the best of both, the machine may be shared); the best shape is "the peak";
- SAETrainer.step throughput in tokens/s (steady state, warm-up steps dropped) and fit()
  end to end, and the achieved fraction of the peak, counting the FLOPs the implementation
  actually computes per token (multiply-add = 2 FLOPs):
      encoder, dense:       forward 2dF, backward 4dF (grad W_enc and grad of x - b_dec)  -> 6dF
      decoder, sparse TopK: forward 2kd (gather k rows of W_dec), backward 4kd            -> 6kd
      AuxK, only on steps with dead latents: a dense (B x F) @ W_dec and its backward    -> 6dF
  i.e. 6dF + 6kd per token (+ 6dF on AuxK steps); topk, the Adam update and the decoder
  renormalisation are counted as zero FLOPs (they are memory-bound work);
- the time of features.feature_stats (the gallery's statistics pass) for ~10,000 tokens x 3,072 features.

    python bench/sae.py [--steps 20] [--batch-size 4096] [--threads N] [--stats-tokens 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

import core
from core.analysis import features as ft
from core.analysis.sae import SAEConfig, SAETrainer, token_rows
from results import result

LAYER = "encoder.layer.3"
TARGET = 0.40


def matmul_flops(shape_a: tuple[int, int], shape_b: tuple[int, int], repeats: int) -> float:
    """Best FLOP/s of a float32 (m x n) @ (n x p) matmul over `repeats` timed runs (after one warm-up)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(*shape_a, generator=g)
    b = torch.randn(*shape_b, generator=g)
    out = torch.empty(shape_a[0], shape_b[1])
    torch.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * shape_a[0] * shape_a[1] * shape_b[1] / best


def step_flops(batch: int, d: int, F: int, k: int, aux: bool) -> float:
    return batch * (6 * d * F + 6 * k * d + (6 * d * F if aux else 0))


def profile_steps(trainer: SAETrainer, batches: list[torch.Tensor], n: int = 2) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x in batches[:n]:
            trainer.step(x)
    print(f"\nprofile of {n} SAETrainer.step calls (self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed SAETrainer.step calls")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--expansion", type=float, default=8.0)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per matmul shape")
    parser.add_argument("--stats-tokens", type=int, default=10_000)
    parser.add_argument("--no-profile", action="store_true", help="skip the profile printed below the target")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    tmp = tempfile.TemporaryDirectory(prefix="layerscope-bench-sae-")
    store = core.Store(tmp.name)
    model = core.load_model("minilm", device="cpu")
    start = time.perf_counter()
    acts = core.extract(model, core.load_dataset("demo:sentences"), layers=[LAYER], pooling="tokens", store=store)
    rows = token_rows(acts)
    values = np.asarray(acts[LAYER][rows], dtype=np.float32)
    d = values.shape[1]
    config = SAEConfig(expansion=args.expansion, k=args.k, batch_size=args.batch_size,
                       training_tokens=args.batch_size * (args.steps + args.warmup))
    F, k, B = config.width(d), config.k, config.batch_size
    print(f"minilm {LAYER} tokens run: {values.shape[0]:,} tokens (first tokens left out), d={d}; "
          f"extracted in {time.perf_counter() - start:.1f} s")
    print(f"TopK SAE: d={d}, width F={F} ({args.expansion:g}x), k={k}, batch {B}; torch threads: {threads}, float32, cpu")

    # ----- the machine's dense matmul throughput ------------------------------------------------
    shapes = {"x @ W_enc          (B x d) @ (d x F)": ((B, d), (d, F)),
              "grad W_enc: x^T @ g (d x B) @ (B x F)": ((d, B), (B, F)),
              "grad x: g @ W_enc^T (B x F) @ (F x d)": ((B, F), (F, d))}
    print(f"\nmeasured dense float32 matmul (best of {args.repeats}):")
    measured = {}
    for name, (sa, sb) in shapes.items():
        measured[name] = matmul_flops(sa, sb, args.repeats)
        print(f"  {name}: {measured[name] / 1e9:7.1f} GFLOP/s")
    peak = max(measured.values())
    print(f"  peak (best shape): {peak / 1e9:.1f} GFLOP/s")

    # ----- SAETrainer.step, steady state ---------------------------------------------------------
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(values.shape[0], generator=g).numpy()
    data = torch.from_numpy(values)
    n_batches = args.steps + args.warmup
    picks = np.resize(order, n_batches * B).reshape(n_batches, B)
    trainer = SAETrainer(config, d, device="cpu")
    trainer.scale = d**0.5 / float(data.norm(dim=1).mean())  # as fit() does: mean norm sqrt(d)
    batches = [data[p] * trainer.scale for p in picks]
    with torch.no_grad():  # as fit() does: b_dec starts at the mean of the first (up to 8) batches
        trainer.sae.b_dec.copy_(torch.cat(batches[:8]).mean(0))
    for x in batches[: args.warmup]:
        trainer.step(x)
    times, flops, aux_steps = [], [], 0
    for x in batches[args.warmup :]:
        aux = bool((trainer.tokens_since_fired >= config.dead_window).any()) and config.revive_dead
        start = time.perf_counter()
        trainer.step(x)
        times.append(time.perf_counter() - start)
        flops.append(step_flops(B, d, F, k, aux))
        aux_steps += aux
    total_time = sum(times)
    # the machine may be shared: measure the matmuls again right after the steps and keep each shape's best
    for name, (sa, sb) in shapes.items():
        measured[name] = max(measured[name], matmul_flops(sa, sb, args.repeats))
    peak = max(measured.values())
    print("\nmatmul peak, best of the measurements before and after the steps: "
          + ", ".join(f"{m / 1e9:.1f}" for m in measured.values()) + f" GFLOP/s -> peak {peak / 1e9:.1f} GFLOP/s")
    tokens_per_s = B * len(times) / total_time
    achieved = sum(flops) / total_time
    fraction = achieved / peak
    per_token = step_flops(1, d, F, k, False)
    print(f"\nSAETrainer.step ({len(times)} steps after {args.warmup} warm-up; AuxK active on {aux_steps} of them):")
    print(f"  FLOPs per token counted: 6*d*F + 6*k*d = {per_token / 1e6:.2f} MFLOP"
          f" (+ 6*d*F = {6 * d * F / 1e6:.2f} MFLOP on AuxK steps)")
    print(f"  median step {statistics.median(times) * 1e3:.0f} ms; {tokens_per_s:,.0f} tokens/s; "
          f"{achieved / 1e9:.1f} GFLOP/s")
    print(f"  achieved fraction of the measured matmul peak: {fraction:.1%}")
    result("SAETrainer.step throughput / measured matmul peak (CPU)", f"{fraction:.1%}", f">= {TARGET:.0%}",
           fraction >= TARGET)

    # ----- fit() end to end (scale estimation, logging, checkpoints included) --------------------------
    fit_config = SAEConfig(expansion=args.expansion, k=args.k, batch_size=B, training_tokens=B * args.steps)
    fit_batches = [data[p] for p in picks[: args.steps]]
    start = time.perf_counter()
    sae, history = SAETrainer(fit_config, d, device="cpu").fit(iter(fit_batches))
    seconds = time.perf_counter() - start
    print(f"\nSAETrainer.fit, {history.steps} steps end to end: {B * history.steps / seconds:,.0f} tokens/s "
          f"({seconds:.1f} s; final fve {history.fve[-1]:.3f}, l0 {history.l0[-1]:.1f})")

    # ----- the gallery's statistics pass --------------------------------------------------------------
    lengths = np.asarray(acts.lengths) - 1  # first tokens are left out
    n_inputs = int(np.searchsorted(np.cumsum(lengths), args.stats_tokens)) + 1
    small = core.extract(model, core.load_dataset("demo:sentences", limit=n_inputs), layers=[LAYER],
                         pooling="tokens", store=store)
    start = time.perf_counter()
    stats = ft.feature_stats(sae, small, LAYER, device="cpu")
    seconds = time.perf_counter() - start
    print(f"\nfeatures.feature_stats ({small.n_inputs} inputs, {stats.n_tokens:,} tokens x {stats.n_features:,} "
          f"features, {len(small.label_columns)} label columns): {seconds:.2f} s "
          f"({stats.n_tokens / seconds:,.0f} tokens/s)")

    if fraction < TARGET and not args.no_profile:
        profile_steps(trainer, batches)
    tmp.cleanup()


if __name__ == "__main__":
    main()
